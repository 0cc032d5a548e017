using VmmKit.Devices;
using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor.Devices;

/// <summary>
/// Each vCPU's local APIC (<see cref="LocalApic"/> from VmmKit.Devices, xAPIC mode with its page at 0xFEE00000) wired
/// into the exit loop the way Xen's vlapic is (xen/arch/x86/hvm/vlapic.c, vmx_intr_assist): its interrupts are
/// injected at VM entry as external interrupts when the guest can take one (RFLAGS.IF = 1, no STI / MOV SS blocking,
/// SDM Vol. 3C §27.3.1.5), otherwise interrupt-window exiting asks for the exit where it can (§26.7.5); the timer's
/// expiry bounds the VMX-preemption timer, so the slice ends when it fires; MOV CR8 exits (CR8-load/store exiting)
/// and reads or writes the TPR (SDM Vol. 3A §11.8.6.1); the register page is emulated on the EPT violation its
/// access causes (<see cref="ApicMmio"/>). The domain's APICs share an <see cref="ApicBus"/> for IPIs.
/// </summary>
internal static class VcpuApic
{
    private const uint Cr8Exiting = (uint)(PrimaryProcessorBasedControls.Cr8LoadExiting | PrimaryProcessorBasedControls.Cr8StoreExiting);

    /// <summary>Xen's shortest period of a periodic timer, 100 µs (xen/arch/x86/hvm/vpt.c <c>create_periodic_time</c>).</summary>
    private const ulong MinimumTimerPeriodNs = 100_000;

    /// <summary>
    /// The APIC of <paramref name="vcpu"/> (APIC ID = vCPU id, vCPU 0 the bootstrap processor), on the domain's bus. A
    /// periodic timer fires at most every 100 µs of guest time, as under Xen: initial count 1 would otherwise end the
    /// slice after every instruction.
    /// </summary>
    public static LocalApic Create(VirtualCpu vcpu)
    {
        var apic = new LocalApic((uint)vcpu.Id, vcpu.Id == 0, new Clock(vcpu))
        {
            Host = new Host(vcpu),
            MinimumTimerPeriod = GuestTime.ToTicks(MinimumTimerPeriodNs),
        };
        vcpu.Domain.Apics.Add(apic);
        return apic;
    }

    /// <summary>Sets the VMCS controls the APIC needs after the VMCS was programmed: CR8-load and CR8-store exiting.</summary>
    public static void ProgramVmcs(VirtualCpu vcpu)
    {
        if ((vcpu.Domain.Machine.Capabilities.PrimaryProcessorBased.MayBeOne & Cr8Exiting) != Cr8Exiting)
            return;
        vcpu.Vmcs.Write(VmcsField.PrimaryProcessorBasedVmExecutionControls,
            vcpu.Vmcs.Read(VmcsField.PrimaryProcessorBasedVmExecutionControls) | Cr8Exiting);
    }

    /// <summary>
    /// Just before VM entry (after the event-channel upcall had its turn): an NMI or the highest deliverable interrupt
    /// is injected when the guest can take it, else the matching window exiting is requested; a timer whose expiry
    /// raises an interrupt shortens the VMX-preemption timer to it (a masked one, or one whose vector already waits in
    /// the IRR, does not: its expiry changes nothing).
    /// </summary>
    public static void BeforeEntry(VirtualCpu vcpu)
    {
        var apic = vcpu.Apic;
        var vmcs = vcpu.Vmcs;
        if (apic.HasPendingNmi)
        {
            if (vmcs.CanInjectNmi && apic.AcknowledgeNmi())
                vmcs.InjectNmi();
            else
                SetWindowExiting(vcpu, PrimaryProcessorBasedControls.NmiWindowExiting);
        }

        if (apic.HasPendingInterrupt)
        {
            if (vmcs.CanInjectExternalInterrupt)
                vmcs.InjectExternalInterrupt(apic.AcknowledgeInterrupt());
            else
                SetWindowExiting(vcpu, PrimaryProcessorBasedControls.InterruptWindowExiting);
        }

        if (apic.NextTimerInterrupt is { } expiry)
        {
            var machine = vcpu.Domain.Machine;
            if ((vmcs.Read(VmcsField.PinBasedVmExecutionControls) & (uint)PinBasedControls.ActivateVmxPreemptionTimer) == 0)
                return;
            ulong now = GuestTime.Tsc(vcpu);
            ulong ticks = expiry > now ? (expiry - now) >> machine.Capabilities.Misc.PreemptionTimerRate : 0;
            ulong current = vmcs.Read(VmcsField.VmxPreemptionTimerValue);
            vmcs.Write(VmcsField.VmxPreemptionTimerValue, Math.Clamp(ticks, 1, Math.Max(current, 1)));
        }
    }

    /// <summary>True when the APIC has an interrupt the processor would accept now (a halted vCPU wakes for it).</summary>
    public static bool HasPendingInterrupt(VirtualCpu vcpu) => vcpu.Apic.HasPendingInterrupt || vcpu.Apic.HasPendingNmi;

    /// <summary>
    /// The vCPU's earliest wake-up in system time (ns): its Xen timers or its APIC timer, null when none is set. An APIC
    /// timer whose expiry raises nothing (masked, or its vector already in the IRR) is none: a halted vCPU with only
    /// such a timer can never wake, and the scheduler must not keep skipping time for it.
    /// </summary>
    public static ulong? NextDeadline(VirtualCpu vcpu)
    {
        ulong? xen = vcpu.Timers.NextDeadline;
        if (vcpu.Apic.NextTimerInterrupt is not { } expiry)
            return xen;
        ulong apic = GuestTime.ToNanoseconds(expiry);
        return xen is { } x ? Math.Min(x, apic) : apic;
    }

    /// <summary>MOV from CR8 (64-bit mode): TPR[7:4].</summary>
    public static ulong ReadCr8(VirtualCpu vcpu) => vcpu.Apic.Cr8;

    /// <summary>
    /// MOV to CR8: TPR = (value &amp; 0xF) &lt;&lt; 4, bits 63:4 ignored, as Xen 4.17's <c>hvm_mov_to_cr</c> (hvm.c) takes it:
    /// the CR8-load exit comes before the processor's reserved-bit #GP (SDM Vol. 3C §26.1.1).
    /// </summary>
    public static void WriteCr8(VirtualCpu vcpu, ulong value) => vcpu.Apic.Cr8 = value & 0xF;

    /// <summary>
    /// RDMSR/WRMSR of IA32_APIC_BASE. x2APIC mode (EXTD) is refused with #GP because CPUID does not report x2APIC, as
    /// the SDM requires (Vol. 3A §11.12.1); the x2APIC MSRs and IA32_TSC_DEADLINE are not offered either. An enabled
    /// xAPIC cannot move its window, as Xen's <c>guest_wrmsr_apic_base</c>.
    /// </summary>
    public static bool TryAccessApicBase(VirtualCpu vcpu, bool write, ref ulong value)
    {
        if (write && (value & LocalApic.ApicBaseExtd) != 0)
            return false;
        // Xen 4.17's guest_wrmsr_apic_base: an enabled xAPIC's MMIO window stays at its default address (#GP otherwise).
        const ulong addressMask = 0x000F_FFFF_FFFF_F000, defaultBase = 0xFEE0_0000;
        if (write && (value & LocalApic.ApicBaseEnable) != 0 && (value & addressMask) != defaultBase)
            return false;
        return write
            ? vcpu.Apic.WriteMsr(LocalApic.ApicBaseMsr, value) == ApicAccessResult.Ok
            : vcpu.Apic.ReadMsr(LocalApic.ApicBaseMsr, out value) == ApicAccessResult.Ok;
    }

    private static void SetWindowExiting(VirtualCpu vcpu, PrimaryProcessorBasedControls control)
    {
        if ((vcpu.Domain.Machine.Capabilities.PrimaryProcessorBased.MayBeOne & (uint)control) == 0)
            return;
        vcpu.Vmcs.Write(VmcsField.PrimaryProcessorBasedVmExecutionControls,
            vcpu.Vmcs.Read(VmcsField.PrimaryProcessorBasedVmExecutionControls) | (uint)control);
    }

    /// <summary>The APIC timer counts the vCPU's guest TSC.</summary>
    private sealed class Clock(VirtualCpu vcpu) : IGuestClock
    {
        public ulong Tsc => GuestTime.Tsc(vcpu);
    }

    /// <summary>
    /// A new interrupt kicks the vCPU (the scheduler looks at it again); INIT and a start-up IPI take the vCPU down and
    /// start it (<see cref="VcpuLifecycle"/>); level-triggered EOIs need an I/O APIC, which this hypervisor does not have.
    /// </summary>
    private sealed class Host(VirtualCpu vcpu) : ILocalApicHost
    {
        public void InterruptPending(LocalApic apic) => vcpu.Kick();

        public void InitReceived(LocalApic apic) => VcpuLifecycle.Init(vcpu);

        public void StartupReceived(LocalApic apic, byte vector) => VcpuLifecycle.Startup(vcpu, vector);

        public void LevelTriggeredEoi(LocalApic apic, byte vector)
        {
        }
    }
}
