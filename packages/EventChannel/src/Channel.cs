namespace VmmKit.EventChannel;

/// <summary>
/// One port of a domain: Xen's <c>struct evtchn</c>. State changes hold the domain's event lock
/// and this channel's <see cref="Lock"/> (both channels' locks for an interdomain pair); senders
/// hold only the sending channel's lock, which is enough because a channel cannot leave
/// <see cref="ChannelState.Interdomain"/> without both locks (xen/common/event_channel.c).
/// </summary>
internal sealed class Channel(uint port, long ordinal)
{
    public readonly uint Port = port;
    /// <summary>Orders channel locks when two are taken (Xen orders by address).</summary>
    public readonly long Ordinal = ordinal;
    public readonly Lock Lock = new();

    public volatile ChannelState State;
    public volatile int NotifyVcpu;

    // ECS_UNBOUND: u.unbound.remote_domid.
    public ushort UnboundRemoteDomain;
    // ECS_INTERDOMAIN: u.interdomain.remote_dom / remote_port.
    public EventChannelDomain? RemoteDomain;
    public uint RemotePort;
    // ECS_VIRQ: u.virq.
    public uint Virq;

    // FIFO ABI (xen/common/event_fifo.c): priority, the queue last used (fifo_lastq), and the
    // pending state kept while the port's event array page is missing.
    public volatile int Priority = FifoEventWord.PriorityDefault;
    public int FifoLastQueue;
    public volatile bool FifoPending;
}
