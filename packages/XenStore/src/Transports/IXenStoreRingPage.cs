namespace VmmKit.XenStore.Transports;

/// <summary>
/// The shared page holding a <c>struct xenstore_domain_interface</c> (xen/io/xs_wire.h): a guest frame
/// mapped by the host, or any memory standing in for one. The span must stay valid (pinned) for the
/// page's lifetime and be at least <see cref="XenStoreDomainInterface.Size"/> bytes long.
/// </summary>
public interface IXenStoreRingPage
{
    /// <summary>The page's bytes.</summary>
    Span<byte> Span { get; }
}

/// <summary>Sends the event-channel notification to the other end of a ring (the "kick").</summary>
public interface IXenStoreEventNotifier
{
    /// <summary>Notifies the peer that indexes moved.</summary>
    void Notify();
}
