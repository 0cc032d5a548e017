using VmmKit.Hypercall;

namespace VmmKit.ReferenceHypervisor.Hypercalls;

/// <summary><c>__HYPERVISOR_sched_op(cmd, arg)</c> (xen/common/sched/core.c, <c>do_sched_op</c>): yield, block, poll and shutdown.</summary>
internal static class SchedOpHypercall
{
    /// <summary>SCHEDOP_yield: ends the time slice; returns 0.</summary>
    public static long Yield(ref HypercallCall<VirtualCpu> call)
    {
        call.Caller.PendingAction = ExitAction.Yield;
        return 0;
    }

    /// <summary>
    /// SCHEDOP_block: events are enabled (<c>evtchn_upcall_mask</c> cleared) and the vCPU sleeps until an event is
    /// pending; it does not sleep at all when one already is (Xen's <c>vcpu_block_enable_events</c>). Returns 0.
    /// </summary>
    public static long Block(ref HypercallCall<VirtualCpu> call)
    {
        var vcpu = call.Caller;
        Span<byte> info = vcpu.Time.VcpuInfo(vcpu);
        if (!info.IsEmpty)
            Volatile.Write(ref info[1], (byte)0);
        if (vcpu.UpcallPending || Devices.VcpuApic.HasPendingInterrupt(vcpu))
            return 0;
        vcpu.IsBlocked = true;
        vcpu.PendingAction = ExitAction.Block;
        return 0;
    }

    /// <summary>
    /// SCHEDOP_poll (Xen's <c>do_poll</c>): sleeps until one of the listed ports is pending or the absolute timeout (guest
    /// system time, 0 for none) passes; returns 0 at once when a port already is, or when an event the guest can take
    /// now is pending (<see cref="EventsNeedDelivery"/>). More than 128 ports or a port the domain does not have is
    /// -EINVAL, an unreadable list -EFAULT.
    /// </summary>
    public static long Poll(ref HypercallCall<VirtualCpu> call)
    {
        ulong ports, timeout;
        uint count;
        if (call.Abi == HypercallAbi.Native64)
        {
            if (!call.TryCopyFromGuest(call.Argument(1), out SchedPoll p))
                return XenErrno.EFAULT.Negated();
            (ports, count, timeout) = (p.Ports, p.NrPorts, p.Timeout);
        }
        else
        {
            if (!call.TryCopyFromGuest(call.Argument(1), out CompatSchedPoll p))
                return XenErrno.EFAULT.Negated();
            (ports, count, timeout) = (p.Ports, p.NrPorts, p.Timeout);
        }

        if (count > (uint)VcpuTimers.MaxPollPorts)
            return XenErrno.EINVAL.Negated();
        var vcpu = call.Caller;
        if (EventsNeedDelivery(vcpu))
            return 0;   // do_poll: local_events_need_delivery() ends the poll before it looks at the ports
        var events = vcpu.Domain.Events;
        Span<uint> list = stackalloc uint[VcpuTimers.MaxPollPorts];
        for (uint i = 0; i < count; i++)
        {
            if (!call.TryCopyFromGuest(ports + (i * 4), out uint port))
                return XenErrno.EFAULT.Negated();
            // evtchn_port_poll (Xen 4.17's xen/include/xen/event.h): a port past the allocated ones, or one evtchn_usable
            // refuses (free, or port 0, reserved), is -EINVAL.
            if (port >= (uint)events.MaxPorts || events.Hypervisor.GetState(events, port) <= VmmKit.EventChannel.ChannelState.Reserved)
                return XenErrno.EINVAL.Negated();
            if (events.Hypervisor.IsPending(events, port))
                return 0;
            list[(int)i] = port;
        }

        if (timeout != 0 && timeout <= GuestTime.SystemTime(vcpu))
            return 0;
        vcpu.Timers.StartPoll(list[..(int)count], timeout == 0 ? null : timeout);
        vcpu.IsBlocked = true;
        vcpu.PendingAction = ExitAction.Block;
        return 0;
    }

    /// <summary>
    /// Xen's <c>local_events_need_delivery</c> for an HVM vCPU (<c>hvm_local_events_need_delivery</c>): an upcall on the
    /// callback vector or a local APIC interrupt is pending and the guest can take it now, RFLAGS.IF set and no STI or
    /// MOV SS shadow (<c>vmx_interrupt_blocked</c>); an NMI needs only no shadow. An upcall marked pending during the
    /// caller's slice (a sibling's send on another thread) is taken at once instead of waiting for a polled port.
    /// </summary>
    private static bool EventsNeedDelivery(VirtualCpu vcpu)
    {
        const ulong RflagsIf = 1ul << 9, StiOrMovSsShadow = 3;
        if ((vcpu.Vmcs.Read(Vmx.VmcsField.GuestInterruptibilityState) & StiOrMovSsShadow) != 0)
            return false;
        if (vcpu.Apic.HasPendingNmi)
            return true;
        if ((vcpu.Vmcs.Read(Vmx.VmcsField.GuestRflags) & RflagsIf) == 0)
            return false;
        return (vcpu.UpcallPending && vcpu.Domain.CallbackVector is not null) || vcpu.Apic.HasPendingInterrupt;
    }

    /// <summary>
    /// SCHEDOP_pin_override: the hardware domain's only (Xen 4.17's <c>do_sched_op</c>: -EPERM for any other, before
    /// the argument is read). Domain 0 here has no physical CPU to pin to: not implemented (-ENOSYS).
    /// </summary>
    public static long PinOverride(ref HypercallCall<VirtualCpu> call) =>
        call.Caller.Domain.IsPrivileged ? XenErrno.ENOSYS.Negated() : XenErrno.EPERM.Negated();

    /// <summary>
    /// SCHEDOP_shutdown: reads <c>struct sched_shutdown</c> and stops the domain with its reason
    /// (Xen passes the reason on as a <c>u8</c> without checking it). -EFAULT for a bad pointer.
    /// </summary>
    public static long Shutdown(ref HypercallCall<VirtualCpu> call)
    {
        if (!call.TryCopyFromGuest(call.Argument(1), out SchedShutdown s))
            return XenErrno.EFAULT.Negated();
        call.Caller.Domain.Shutdown((ShutdownReason)(byte)s.Reason);
        call.Caller.PendingAction = ExitAction.Stop;
        return 0;
    }
}
