using VmmKit.Hypercall;

namespace VmmKit.ReferenceHypervisor.Hypercalls;

/// <summary><c>__HYPERVISOR_sched_op(cmd, arg)</c> (xen/common/sched/core.c, <c>do_sched_op</c>): yield, block and shutdown.</summary>
internal static class SchedOpHypercall
{
    /// <summary>SCHEDOP_yield: ends the time slice; returns 0.</summary>
    public static long Yield(ref HypercallCall<VirtualCpu> call)
    {
        call.Caller.PendingAction = ExitAction.Yield;
        return 0;
    }

    /// <summary>SCHEDOP_block: the vCPU sleeps until an event is pending; returns 0 when it wakes.</summary>
    public static long Block(ref HypercallCall<VirtualCpu> call)
    {
        call.Caller.IsBlocked = true;
        call.Caller.PendingAction = ExitAction.Block;
        return 0;
    }

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
