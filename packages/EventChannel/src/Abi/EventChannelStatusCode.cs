namespace VmmKit.EventChannel;

/// <summary><c>EVTCHNSTAT_*</c> (xen/event_channel.h): the <c>status</c> field of <see cref="EvtchnStatus"/>.</summary>
public enum EventChannelStatusCode : uint
{
    /// <summary><c>EVTCHNSTAT_closed</c>: the channel is not in use.</summary>
    Closed = 0,
    /// <summary><c>EVTCHNSTAT_unbound</c>: waiting for an interdomain connection.</summary>
    Unbound = 1,
    /// <summary><c>EVTCHNSTAT_interdomain</c>: connected to a remote domain.</summary>
    Interdomain = 2,
    /// <summary><c>EVTCHNSTAT_pirq</c>: bound to a physical IRQ.</summary>
    Pirq = 3,
    /// <summary><c>EVTCHNSTAT_virq</c>: bound to a virtual IRQ.</summary>
    Virq = 4,
    /// <summary><c>EVTCHNSTAT_ipi</c>: bound to a virtual IPI.</summary>
    Ipi = 5,
}
