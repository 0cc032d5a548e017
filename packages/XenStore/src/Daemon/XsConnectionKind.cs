namespace VmmKit.XenStore.Daemon;

/// <summary>How a client reaches the daemon.</summary>
public enum XsConnectionKind
{
    /// <summary>A Unix socket client (libxenstore, the xenstore-* tools): acts as dom0.</summary>
    Socket,
    /// <summary>A domain's shared ring page (<c>struct xenstore_domain_interface</c>).</summary>
    DomainRing,
    /// <summary>An in-process stream (tests, embedding).</summary>
    Stream,
}
