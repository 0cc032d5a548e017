using System.Runtime.InteropServices;
using VmmKit.Hypercall;

namespace VmmKit.ReferenceHypervisor.Hypercalls;

/// <summary>
/// <c>struct vcpu_set_singleshot_timer</c> (xen/vcpu.h): the same offsets for 32- and 64-bit callers; packed to the
/// 12 bytes i386 gives it (x86-64 adds 4 bytes of tail padding nobody reads).
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 4)]
internal struct VcpuSetSingleshotTimer
{
    /// <summary><c>VCPU_SSHOTTMR_future</c>: ignored by Xen 4.17 (<c>common_vcpu_op</c>), as here.</summary>
    public const uint FlagFuture = 1;

    /// <summary><c>timeout_abs_ns</c>: the deadline in guest system time.</summary>
    public ulong TimeoutAbsNs;

    /// <summary><c>flags</c>: VCPU_SSHOTTMR_*.</summary>
    public uint Flags;
}

/// <summary>
/// The timer hypercalls (xen/common/domain.c <c>do_vcpu_op</c>, xen/common/sched/core.c <c>do_set_timer_op</c>):
/// the singleshot timer sends VIRQ_TIMER at its deadline in guest system time; there is no periodic timer.
/// </summary>
internal static class TimerHypercalls
{
    /// <summary>
    /// VCPUOP_set_singleshot_timer: only for the calling vCPU (-EINVAL otherwise). Xen 4.17's <c>common_vcpu_op</c> ignores
    /// the flags (<c>VCPU_SSHOTTMR_future</c> included): a deadline already passed fires at once and the call returns 0. A
    /// 32-bit caller's argument is read first (<c>compat_common_vcpu_op</c>: -EFAULT before the vCPU's -EINVAL).
    /// </summary>
    public static long SetSingleshot(ref HypercallCall<VirtualCpu> call)
    {
        VcpuSetSingleshotTimer t = default;
        bool compat = call.Abi != HypercallAbi.Native64;
        if (compat && !call.TryCopyFromGuest(call.Argument(2), out t))
            return (uint)call.Argument(1) < (uint)call.Caller.Domain.Vcpus.Count ? XenErrno.EFAULT.Negated() : XenErrno.ENOENT.Negated();
        if (!TryGetSelf(ref call, out var vcpu, out long rc))
            return rc;
        if (!compat && !call.TryCopyFromGuest(call.Argument(2), out t))
            return XenErrno.EFAULT.Negated();
        vcpu.Timers.Singleshot = t.TimeoutAbsNs;   // a passed deadline fires at the vCPU's next timer check, at once
        return 0;
    }

    /// <summary>VCPUOP_stop_singleshot_timer: only for the calling vCPU.</summary>
    public static long StopSingleshot(ref HypercallCall<VirtualCpu> call)
    {
        if (!TryGetSelf(ref call, out var vcpu, out long rc))
            return rc;
        vcpu.Timers.Singleshot = null;
        return 0;
    }

    /// <summary>VCPUOP_stop_periodic_timer: no periodic timer runs in this hypervisor; 0 for an existing vCPU.</summary>
    public static long StopPeriodic(ref HypercallCall<VirtualCpu> call) =>
        (uint)call.Argument(1) < (uint)call.Caller.Domain.Vcpus.Count ? 0 : XenErrno.ENOENT.Negated();

    /// <summary>
    /// <c>set_timer_op(timeout)</c>: 0 stops the singleshot timer; a deadline wrapped negative or more than 2^50 ns ahead
    /// becomes now + 100 ms, as Xen works around Linux's jiffy wrap; a deadline already passed fires at once (Xen's
    /// <c>do_set_timer_op</c> takes the offset as signed). A 32-bit caller passes the 64-bit value in two registers (low,
    /// high).
    /// </summary>
    public static long SetTimerOp(ref HypercallCall<VirtualCpu> call)
    {
        ulong timeout = call.Abi == HypercallAbi.Native64
            ? call.Argument(0)
            : (call.Argument(0) & uint.MaxValue) | (call.Argument(1) << 32);
        var vcpu = call.Caller;
        if (timeout == 0)
        {
            vcpu.Timers.Singleshot = null;
            return 0;
        }

        ulong now = GuestTime.SystemTime(vcpu);
        long offset = (long)(timeout - now);
        if ((long)timeout < 0 || (offset > 0 && (offset >> 50) != 0))
            timeout = now + 100_000_000;
        vcpu.Timers.Singleshot = timeout;
        return 0;
    }

    private static bool TryGetSelf(ref HypercallCall<VirtualCpu> call, out VirtualCpu vcpu, out long rc)
    {
        uint id = (uint)call.Argument(1);
        var vcpus = call.Caller.Domain.Vcpus;
        vcpu = call.Caller;
        if (id >= (uint)vcpus.Count)
        {
            rc = XenErrno.ENOENT.Negated();
            return false;
        }

        rc = vcpus[(int)id] == call.Caller ? 0 : XenErrno.EINVAL.Negated();
        return rc == 0;
    }
}
