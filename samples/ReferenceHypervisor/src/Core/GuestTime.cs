using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// The guest's notion of time. The emulated TSC advances by one per retired instruction (VmmKit.Vmx.Emulator);
/// this hypervisor calls that a 1 GHz TSC, reports it through pvclock (xen.h <c>vcpu_time_info</c>) and starts
/// system time at 0 ns when the TSC is 0, so guest time is deterministic. On the threaded scheduler the vCPUs of a
/// domain run at once, so the TSC a guest reads comes from the domain's one clock instead (<see cref="ReadTsc"/>).
/// </summary>
internal static class GuestTime
{
    /// <summary>The nominal TSC frequency: one tick per retired instruction is 1 ns. CPUID reports the same frequency.</summary>
    public const ulong TscFrequencyHz = 1_000_000_000;

    /// <summary>pvclock <c>tsc_to_system_mul</c> for <see cref="TscFrequencyHz"/>.</summary>
    public static readonly uint TscToSystemMul;

    /// <summary>pvclock <c>tsc_shift</c> for <see cref="TscFrequencyHz"/>.</summary>
    public static readonly sbyte TscShift;

    static GuestTime() => (TscToSystemMul, TscShift) = TimeScale(TscFrequencyHz);

    /// <summary>
    /// Xen's <c>set_time_scale</c> (xen/arch/x86/time.c): a shift that brings the rate into (1e9, 2e9] ticks per second,
    /// then the 0.32 fixed-point multiplier from ticks to nanoseconds. For 1 GHz: shift 1, multiplier 2^31.
    /// </summary>
    public static (uint Mul, sbyte Shift) TimeScale(ulong ticksPerSecond)
    {
        const ulong NsPerSecond = 1_000_000_000;
        ulong tps = ticksPerSecond;
        int shift = 0;
        while (tps > NsPerSecond * 2)
        {
            tps >>= 1;
            shift--;
        }

        uint tps32 = (uint)tps;
        while (tps32 <= NsPerSecond)
        {
            tps32 <<= 1;
            shift++;
        }

        return ((uint)((NsPerSecond << 32) / tps32), (sbyte)shift);
    }

    /// <summary>The TSC the guest reads now: instructions retired plus the VMCS TSC offset when "use TSC offsetting" is on (SDM Vol. 3C §26.6.5).</summary>
    public static ulong Tsc(VirtualCpu vcpu)
    {
        ulong tsc = vcpu.InstructionsRetired;
        var controls = (PrimaryProcessorBasedControls)vcpu.Vmcs.Read(VmcsField.PrimaryProcessorBasedVmExecutionControls);
        if ((controls & PrimaryProcessorBasedControls.UseTscOffsetting) != 0)
            tsc += vcpu.Vmcs.Read(VmcsField.TscOffset);
        return tsc;
    }

    /// <summary>
    /// The TSC a guest instruction reads: RDTSC, RDTSCP and RDMSR of IA32_TSC. On the round-robin scheduler the vCPU's
    /// own <see cref="Tsc"/> (deterministic; its domain's vCPUs share one processor and one clock). On the threaded
    /// scheduler those instructions exit (RDTSC exiting) and every read goes through the domain's clock
    /// (<see cref="Domain.ObserveClock"/>): the vCPU's TSC is raised to the clock, the clock to the vCPU's TSC, in one
    /// atomic step, so a read is never below a read another vCPU made before it (Linux's tsc_sync.c check_tsc_warp), and
    /// the vCPU's TSC (its timers, its pvclock) carries on from the value read. Only on the vCPU's own thread.
    /// </summary>
    public static ulong ReadTsc(VirtualCpu vcpu)
    {
        ulong mine = Tsc(vcpu);
        if (vcpu.Thread is null)
            return mine;
        ulong now = vcpu.Domain.ObserveClock(mine);
        if (now > mine && !TryAdvance(vcpu, now - mine))
            return mine;
        return now;
    }

    /// <summary>Nanoseconds for <paramref name="ticks"/> TSC ticks, as a guest computes them (Linux <c>pvclock_scale_delta</c>).</summary>
    public static ulong ToNanoseconds(ulong ticks)
    {
        ticks = TscShift >= 0 ? ticks << TscShift : ticks >> -TscShift;
        return (ulong)((UInt128)ticks * TscToSystemMul >> 32);
    }

    /// <summary>TSC ticks for <paramref name="nanoseconds"/>, rounded up (the inverse of <see cref="ToNanoseconds"/>).</summary>
    public static ulong ToTicks(ulong nanoseconds) =>
        (ulong)UInt128.Min(((UInt128)nanoseconds * TscFrequencyHz + 999_999_999) / 1_000_000_000, ulong.MaxValue / 4);

    /// <summary>
    /// Moves the vCPU's clock forward by <paramref name="ticks"/> while it is blocked (its TSC offset grows; SDM Vol. 3C
    /// §26.6.5). False when the VMCS does not use TSC offsetting.
    /// </summary>
    public static bool TryAdvance(VirtualCpu vcpu, ulong ticks)
    {
        var controls = (PrimaryProcessorBasedControls)vcpu.Vmcs.Read(VmcsField.PrimaryProcessorBasedVmExecutionControls);
        if ((controls & PrimaryProcessorBasedControls.UseTscOffsetting) == 0)
            return false;
        vcpu.Vmcs.Write(VmcsField.TscOffset, vcpu.Vmcs.Read(VmcsField.TscOffset) + ticks);
        return true;
    }

    /// <summary>
    /// Threaded scheduler, on the vCPU's own thread: a TSC behind its domain's shared clock (<see cref="Domain.Clock"/>)
    /// moves up to it (its TSC offset grows), a TSC ahead of it raises it. So the vCPUs of a domain read one clock that
    /// never goes back, each within a slice of the others, as the round-robin scheduler's vCPUs on one processor do.
    /// </summary>
    public static void SyncWithDomain(VirtualCpu vcpu)
    {
        var domain = vcpu.Domain;
        ulong mine = Tsc(vcpu), shared = domain.Clock;
        if (shared > mine)
            TryAdvance(vcpu, shared - mine);
        else if (mine > shared)
            domain.PublishClock(mine);
    }

    /// <summary>The vCPU's system time now: nanoseconds since its TSC was 0.</summary>
    public static ulong SystemTime(VirtualCpu vcpu) => ToNanoseconds(Tsc(vcpu));
}
