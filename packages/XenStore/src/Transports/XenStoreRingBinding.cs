namespace VmmKit.XenStore.Transports;

/// <summary>
/// What the host gives the daemon for an introduced domain: the mapped ring page and a way to kick the
/// guest's event channel. The host calls <see cref="Signal"/> whenever the guest notifies the daemon.
/// </summary>
public sealed class XenStoreRingBinding
{
    /// <summary>Creates a binding for a mapped ring page and its event channel.</summary>
    public XenStoreRingBinding(IXenStoreRingPage page, IXenStoreEventNotifier notifier)
    {
        Stream = new XenStoreRingStream(page, notifier, XenStoreRingRole.Server);
    }

    /// <summary>The daemon's end of the ring.</summary>
    public XenStoreRingStream Stream { get; }

    /// <summary>The guest notified the daemon (its event channel fired).</summary>
    public void Signal() => Stream.Signal();
}

/// <summary>
/// Maps a domain's ring page and binds its event channel when the toolstack sends XS_INTRODUCE
/// (xenstored uses xenforeignmemory/gnttab and xenevtchn_bind_interdomain for this).
/// </summary>
public interface IXenStoreDomainConnector
{
    /// <summary>Returns the binding for the domain's ring, or null when it cannot be mapped.</summary>
    XenStoreRingBinding? Connect(uint domainId, long mfn, uint eventChannel);
}
