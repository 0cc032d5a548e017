namespace VmmKit.XenStore.Tests.XenOracle;

/// <summary>
/// One daemon under differential test: Xen's xenstored under the fake-Xen shim, or our XenStoreDaemon.
/// Both are reached the same way: dom0 over the Unix socket, domUs over struct xenstore_domain_interface
/// rings that the toolstack (a dom0 connection) introduces with XS_INTRODUCE.
/// </summary>
internal interface IXsSide : IAsyncDisposable
{
    /// <summary>"xenstored" or "ours", for reports.</summary>
    string Name { get; }

    /// <summary>Opens a new privileged connection over the daemon's Unix socket.</summary>
    Task<RawConnection> ConnectSocketAsync();

    /// <summary>Makes the domain exist (alive, with a zeroed ring page) before the toolstack introduces it.</summary>
    void PrepareDomain(uint domid);

    /// <summary>The guest's end of the ring of a domain the toolstack introduced.</summary>
    RawConnection OpenGuest(uint domid);
}
