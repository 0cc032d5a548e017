namespace VmmKit.EventChannel;

/// <summary>
/// Sub-operations of <c>__HYPERVISOR_event_channel_op(cmd, arg)</c> (<c>EVTCHNOP_*</c>,
/// xen/event_channel.h); <c>arg</c> points to the struct named for each.
/// </summary>
public enum EventChannelOp : uint
{
    /// <summary><c>EVTCHNOP_bind_interdomain</c>: <see cref="EvtchnBindInterdomain"/>.</summary>
    BindInterdomain = 0,
    /// <summary><c>EVTCHNOP_bind_virq</c>: <see cref="EvtchnBindVirq"/>.</summary>
    BindVirq = 1,
    /// <summary><c>EVTCHNOP_bind_pirq</c>: <see cref="EvtchnBindPirq"/>.</summary>
    BindPirq = 2,
    /// <summary><c>EVTCHNOP_close</c>: <see cref="EvtchnClose"/>.</summary>
    Close = 3,
    /// <summary><c>EVTCHNOP_send</c>: <see cref="EvtchnSend"/>.</summary>
    Send = 4,
    /// <summary><c>EVTCHNOP_status</c>: <see cref="EvtchnStatus"/>.</summary>
    Status = 5,
    /// <summary><c>EVTCHNOP_alloc_unbound</c>: <see cref="EvtchnAllocUnbound"/>.</summary>
    AllocUnbound = 6,
    /// <summary><c>EVTCHNOP_bind_ipi</c>: <see cref="EvtchnBindIpi"/>.</summary>
    BindIpi = 7,
    /// <summary><c>EVTCHNOP_bind_vcpu</c>: <see cref="EvtchnBindVcpu"/>.</summary>
    BindVcpu = 8,
    /// <summary><c>EVTCHNOP_unmask</c>: <see cref="EvtchnUnmask"/>.</summary>
    Unmask = 9,
    /// <summary><c>EVTCHNOP_reset</c>: <see cref="EvtchnReset"/>.</summary>
    Reset = 10,
    /// <summary><c>EVTCHNOP_init_control</c>: <see cref="EvtchnInitControl"/> (FIFO ABI).</summary>
    InitControl = 11,
    /// <summary><c>EVTCHNOP_expand_array</c>: <see cref="EvtchnExpandArray"/> (FIFO ABI).</summary>
    ExpandArray = 12,
    /// <summary><c>EVTCHNOP_set_priority</c>: <see cref="EvtchnSetPriority"/> (FIFO ABI).</summary>
    SetPriority = 13,
}
