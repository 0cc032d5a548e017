using VmmKit.Hypercall;

namespace VmmKit.EventChannel;

/// <summary>
/// <c>__HYPERVISOR_event_channel_op(cmd, arg)</c> for a <see cref="HypercallDispatcher{TCaller}"/>:
/// each EVTCHNOP reads its struct from the guest (-EFAULT for a bad pointer), runs the
/// <see cref="EventChannelHypervisor"/> operation for the caller's domain and, where Xen does,
/// copies the struct back on success. <c>EVTCHNOP_reset_cont</c> and unknown commands get -ENOSYS
/// (the dispatcher's default). The old <c>__HYPERVISOR_event_channel_op_compat</c> is not
/// registered (-ENOSYS, as for HVM guests in Xen).
/// </summary>
/// <typeparam name="TCaller">The dispatcher's caller type.</typeparam>
public sealed class EventChannelHypercalls<TCaller>
{
    private readonly EventChannelHypervisor _hypervisor;
    private readonly IEventChannelCallerMap<TCaller> _callers;

    /// <summary>Creates the handlers.</summary>
    /// <param name="hypervisor">The event channels.</param>
    /// <param name="callers">Maps a caller to its domain.</param>
    public EventChannelHypercalls(EventChannelHypervisor hypervisor, IEventChannelCallerMap<TCaller> callers)
    {
        ArgumentNullException.ThrowIfNull(hypervisor);
        ArgumentNullException.ThrowIfNull(callers);
        _hypervisor = hypervisor;
        _callers = callers;
    }

    /// <summary>Registers every EVTCHNOP sub-operation of <c>__HYPERVISOR_event_channel_op</c> with <paramref name="dispatcher"/>.</summary>
    /// <param name="dispatcher">The dispatcher.</param>
    public void Register(HypercallDispatcher<TCaller> dispatcher)
    {
        ArgumentNullException.ThrowIfNull(dispatcher);
        const HypercallNumber op = HypercallNumber.EventChannelOp;
        dispatcher.RegisterSubOp(op, (uint)EventChannelOp.BindInterdomain, BindInterdomain);
        dispatcher.RegisterSubOp(op, (uint)EventChannelOp.BindVirq, BindVirq);
        dispatcher.RegisterSubOp(op, (uint)EventChannelOp.BindPirq, BindPirq);
        dispatcher.RegisterSubOp(op, (uint)EventChannelOp.Close, Close);
        dispatcher.RegisterSubOp(op, (uint)EventChannelOp.Send, Send);
        dispatcher.RegisterSubOp(op, (uint)EventChannelOp.Status, Status);
        dispatcher.RegisterSubOp(op, (uint)EventChannelOp.AllocUnbound, AllocUnbound);
        dispatcher.RegisterSubOp(op, (uint)EventChannelOp.BindIpi, BindIpi);
        dispatcher.RegisterSubOp(op, (uint)EventChannelOp.BindVcpu, BindVcpu);
        dispatcher.RegisterSubOp(op, (uint)EventChannelOp.Unmask, Unmask);
        dispatcher.RegisterSubOp(op, (uint)EventChannelOp.Reset, Reset);
        dispatcher.RegisterSubOp(op, (uint)EventChannelOp.InitControl, InitControl);
        dispatcher.RegisterSubOp(op, (uint)EventChannelOp.ExpandArray, ExpandArray);
        dispatcher.RegisterSubOp(op, (uint)EventChannelOp.SetPriority, SetPriority);
    }

    private static long Fault => XenErrno.EFAULT.Negated();

    private long AllocUnbound(ref HypercallCall<TCaller> call)
    {
        ulong arg = call.Argument(1);
        if (!call.TryCopyFromGuest(arg, out EvtchnAllocUnbound a))
            return Fault;
        long rc = _hypervisor.AllocUnbound(_callers.DomainOf(call.Caller), ref a);
        return rc == 0 && !call.TryCopyToGuest(arg, in a) ? Fault : rc;
    }

    private long BindInterdomain(ref HypercallCall<TCaller> call)
    {
        ulong arg = call.Argument(1);
        if (!call.TryCopyFromGuest(arg, out EvtchnBindInterdomain a))
            return Fault;
        long rc = _hypervisor.BindInterdomain(_callers.DomainOf(call.Caller), ref a);
        return rc == 0 && !call.TryCopyToGuest(arg, in a) ? Fault : rc;
    }

    private long BindVirq(ref HypercallCall<TCaller> call)
    {
        ulong arg = call.Argument(1);
        if (!call.TryCopyFromGuest(arg, out EvtchnBindVirq a))
            return Fault;
        long rc = _hypervisor.BindVirq(_callers.DomainOf(call.Caller), ref a);
        return rc == 0 && !call.TryCopyToGuest(arg, in a) ? Fault : rc;
    }

    private long BindPirq(ref HypercallCall<TCaller> call)
    {
        ulong arg = call.Argument(1);
        if (!call.TryCopyFromGuest(arg, out EvtchnBindPirq a))
            return Fault;
        long rc = _hypervisor.BindPirq(_callers.DomainOf(call.Caller), ref a);
        return rc == 0 && !call.TryCopyToGuest(arg, in a) ? Fault : rc;
    }

    private long BindIpi(ref HypercallCall<TCaller> call)
    {
        ulong arg = call.Argument(1);
        if (!call.TryCopyFromGuest(arg, out EvtchnBindIpi a))
            return Fault;
        long rc = _hypervisor.BindIpi(_callers.DomainOf(call.Caller), ref a);
        return rc == 0 && !call.TryCopyToGuest(arg, in a) ? Fault : rc;
    }

    private long Close(ref HypercallCall<TCaller> call) =>
        call.TryCopyFromGuest(call.Argument(1), out EvtchnClose a) ? _hypervisor.Close(_callers.DomainOf(call.Caller), a.Port) : Fault;

    private long Send(ref HypercallCall<TCaller> call) =>
        call.TryCopyFromGuest(call.Argument(1), out EvtchnSend a) ? _hypervisor.Send(_callers.DomainOf(call.Caller), a.Port) : Fault;

    private long Status(ref HypercallCall<TCaller> call)
    {
        ulong arg = call.Argument(1);
        if (!call.TryCopyFromGuest(arg, out EvtchnStatus a))
            return Fault;
        long rc = _hypervisor.Status(_callers.DomainOf(call.Caller), ref a);
        return rc == 0 && !call.TryCopyToGuest(arg, in a) ? Fault : rc;
    }

    private long BindVcpu(ref HypercallCall<TCaller> call) =>
        call.TryCopyFromGuest(call.Argument(1), out EvtchnBindVcpu a) ? _hypervisor.BindVcpu(_callers.DomainOf(call.Caller), in a) : Fault;

    private long Unmask(ref HypercallCall<TCaller> call) =>
        call.TryCopyFromGuest(call.Argument(1), out EvtchnUnmask a) ? _hypervisor.Unmask(_callers.DomainOf(call.Caller), a.Port) : Fault;

    private long Reset(ref HypercallCall<TCaller> call) =>
        call.TryCopyFromGuest(call.Argument(1), out EvtchnReset a) ? _hypervisor.Reset(_callers.DomainOf(call.Caller), a.Dom) : Fault;

    private long InitControl(ref HypercallCall<TCaller> call)
    {
        ulong arg = call.Argument(1);
        if (!call.TryCopyFromGuest(arg, out EvtchnInitControl a))
            return Fault;
        long rc = _hypervisor.InitControl(_callers.DomainOf(call.Caller), ref a);
        return rc == 0 && !call.TryCopyToGuest(arg, in a) ? Fault : rc;
    }

    private long ExpandArray(ref HypercallCall<TCaller> call) =>
        call.TryCopyFromGuest(call.Argument(1), out EvtchnExpandArray a) ? _hypervisor.ExpandArray(_callers.DomainOf(call.Caller), in a) : Fault;

    private long SetPriority(ref HypercallCall<TCaller> call) =>
        call.TryCopyFromGuest(call.Argument(1), out EvtchnSetPriority a) ? _hypervisor.SetPriority(_callers.DomainOf(call.Caller), in a) : Fault;
}
