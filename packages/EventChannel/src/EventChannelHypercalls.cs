using VmmKit.Hypercall;

namespace VmmKit.EventChannel;

/// <summary>
/// <c>__HYPERVISOR_event_channel_op(cmd, arg)</c> for a <see cref="HypercallDispatcher{TCaller}"/>:
/// each EVTCHNOP reads its struct from the guest (-EFAULT for a bad pointer), runs the
/// <see cref="EventChannelHypervisor"/> operation for the caller's domain and, where Xen does,
/// copies the struct back on success. <c>EVTCHNOP_reset_cont</c> gets reset's checks, then -EBUSY (no reset is
/// ever left to resume), as Xen 4.17 answers it when none is in progress; unknown commands get -ENOSYS (the
/// dispatcher's default). The old <c>__HYPERVISOR_event_channel_op_compat</c> is not
/// registered (-ENOSYS, as for HVM guests in Xen).
/// </summary>
/// <typeparam name="TCaller">The dispatcher's caller type.</typeparam>
public sealed class EventChannelHypercalls<TCaller>
{
    // EVTCHNOP_reset_cont (xen/include/public/event_channel.h, defined for __XEN__ only).
    private const uint ResetCont = 14;

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
        dispatcher.RegisterSubOp(op, ResetCont, ResetContinue);
        dispatcher.RegisterSubOp(op, (uint)EventChannelOp.InitControl, InitControl);
        dispatcher.RegisterSubOp(op, (uint)EventChannelOp.ExpandArray, ExpandArray);
        dispatcher.RegisterSubOp(op, (uint)EventChannelOp.SetPriority, SetPriority);
    }

    private static long Fault => XenErrno.EFAULT.Negated();

    private delegate long InOutOp<T>(EventChannelHypervisor hypervisor, EventChannelDomain caller, ref T op) where T : unmanaged;

    // A sub-op whose struct is read from the guest, updated, and copied back when the operation succeeds (Xen's
    // copy_from_guest ... copy_to_guest); the static lambdas of the callers are cached, so nothing is allocated.
    private long InOut<T>(ref HypercallCall<TCaller> call, InOutOp<T> op) where T : unmanaged
    {
        ulong arg = call.Argument(1);
        if (!call.TryCopyFromGuest(arg, out T a))
            return Fault;
        long rc = op(_hypervisor, _callers.DomainOf(call.Caller), ref a);
        return rc == 0 && !call.TryCopyToGuest(arg, in a) ? Fault : rc;
    }

    private long AllocUnbound(ref HypercallCall<TCaller> call) =>
        InOut(ref call, static (EventChannelHypervisor h, EventChannelDomain d, ref EvtchnAllocUnbound a) => h.AllocUnbound(d, ref a));

    private long BindInterdomain(ref HypercallCall<TCaller> call) =>
        InOut(ref call, static (EventChannelHypervisor h, EventChannelDomain d, ref EvtchnBindInterdomain a) => h.BindInterdomain(d, ref a));

    private long BindVirq(ref HypercallCall<TCaller> call) =>
        InOut(ref call, static (EventChannelHypervisor h, EventChannelDomain d, ref EvtchnBindVirq a) => h.BindVirq(d, ref a));

    private long BindPirq(ref HypercallCall<TCaller> call) =>
        InOut(ref call, static (EventChannelHypervisor h, EventChannelDomain d, ref EvtchnBindPirq a) => h.BindPirq(d, ref a));

    private long BindIpi(ref HypercallCall<TCaller> call) =>
        InOut(ref call, static (EventChannelHypervisor h, EventChannelDomain d, ref EvtchnBindIpi a) => h.BindIpi(d, ref a));

    private long Close(ref HypercallCall<TCaller> call) =>
        call.TryCopyFromGuest(call.Argument(1), out EvtchnClose a) ? _hypervisor.Close(_callers.DomainOf(call.Caller), a.Port) : Fault;

    private long Send(ref HypercallCall<TCaller> call) =>
        call.TryCopyFromGuest(call.Argument(1), out EvtchnSend a) ? _hypervisor.Send(_callers.DomainOf(call.Caller), a.Port) : Fault;

    private long Status(ref HypercallCall<TCaller> call) =>
        InOut(ref call, static (EventChannelHypervisor h, EventChannelDomain d, ref EvtchnStatus a) => h.Status(d, ref a));

    private long BindVcpu(ref HypercallCall<TCaller> call) =>
        call.TryCopyFromGuest(call.Argument(1), out EvtchnBindVcpu a) ? _hypervisor.BindVcpu(_callers.DomainOf(call.Caller), in a) : Fault;

    private long Unmask(ref HypercallCall<TCaller> call) =>
        call.TryCopyFromGuest(call.Argument(1), out EvtchnUnmask a) ? _hypervisor.Unmask(_callers.DomainOf(call.Caller), a.Port) : Fault;

    private long Reset(ref HypercallCall<TCaller> call) =>
        call.TryCopyFromGuest(call.Argument(1), out EvtchnReset a) ? _hypervisor.Reset(_callers.DomainOf(call.Caller), a.Dom) : Fault;

    private long ResetContinue(ref HypercallCall<TCaller> call) =>
        call.TryCopyFromGuest(call.Argument(1), out EvtchnReset a) ? _hypervisor.ResetContinue(_callers.DomainOf(call.Caller), a.Dom) : Fault;

    private long InitControl(ref HypercallCall<TCaller> call) =>
        InOut(ref call, static (EventChannelHypervisor h, EventChannelDomain d, ref EvtchnInitControl a) => h.InitControl(d, ref a));

    private long ExpandArray(ref HypercallCall<TCaller> call) =>
        call.TryCopyFromGuest(call.Argument(1), out EvtchnExpandArray a) ? _hypervisor.ExpandArray(_callers.DomainOf(call.Caller), in a) : Fault;

    private long SetPriority(ref HypercallCall<TCaller> call) =>
        call.TryCopyFromGuest(call.Argument(1), out EvtchnSetPriority a) ? _hypervisor.SetPriority(_callers.DomainOf(call.Caller), in a) : Fault;
}
