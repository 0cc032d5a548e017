using System.Runtime.CompilerServices;
using VmmKit.Devices;
using VmmKit.Hypercall;

namespace VmmKit.ReferenceHypervisor.Host;

/// <summary>
/// The per-vCPU records of the HVM save stream besides CPU (<see cref="HvmContext"/>): LAPIC and LAPIC_REGS from the
/// vCPU's local APIC (VmmKit.Devices' <see cref="LocalApic"/>; xen/arch/x86/hvm/vlapic.c), MTRR from IA32_PAT and the
/// MTRRs (<see cref="MtrrMsrs"/>; xen/arch/x86/hvm/mtrr.c).
/// </summary>
internal static class HvmVcpuRecords
{
    /// <summary><c>lapic_save_hidden</c>: IA32_APIC_BASE, the disabled flags, the timer divisor and IA32_TSC_DEADLINE.</summary>
    public static HvmHwLapic SaveLapic(VirtualCpu vcpu)
    {
        var apic = vcpu.Apic;
        apic.ReadMsr(LocalApic.ApicBaseMsr, out ulong apicBase);
        apic.ReadMsr(LocalApic.TscDeadlineMsr, out ulong deadline);
        Span<byte> page = stackalloc byte[LocalApic.RegisterPageImageSize];
        apic.SaveRegisterPage(page);
        uint divide = BitConverter.ToUInt32(page[(0x3E * 16)..]);
        uint code = ((divide & 8) >> 1) | (divide & 3);       // SDM Vol. 3A Figure 11-10: 111b divides by 1, else 2 << code
        return new HvmHwLapic
        {
            ApicBaseMsr = apicBase,
            Disabled = ((apicBase & LocalApic.ApicBaseEnable) == 0 ? HvmSave.LapicHwDisabled : 0)
                | (apic.IsSoftwareEnabled ? 0 : HvmSave.LapicSwDisabled),
            TimerDivisor = code == 7 ? 1u : 2u << (int)code,
            TdtMsr = deadline,
        };
    }

    /// <summary>
    /// <c>lapic_load_hidden</c>: IA32_APIC_BASE with EN clear and EXTD set is -EINVAL (Xen's check); so is EXTD at all here,
    /// as this hypervisor's CPUID offers no x2APIC (Devices/VcpuApic.cs), and a base the APIC refuses (reserved bits).
    /// <c>disabled</c> and <c>timer_divisor</c> follow from IA32_APIC_BASE and the LAPIC_REGS page (SVR, the divide
    /// configuration) and are not taken from the record; <c>tdt_msr</c> applies once the timer is in TSC-deadline mode.
    /// </summary>
    public static long LoadLapic(VirtualCpu vcpu, in HvmHwLapic lapic, ConditionalWeakTable<VirtualCpu, StrongBox<ulong>> deadlines)
    {
        if ((lapic.ApicBaseMsr & LocalApic.ApicBaseExtd) != 0)
            return XenErrno.EINVAL.Negated();
        var apic = vcpu.Apic;
        if (apic.WriteMsr(LocalApic.ApicBaseMsr, lapic.ApicBaseMsr) != ApicAccessResult.Ok)
            return XenErrno.EINVAL.Negated();
        deadlines.AddOrUpdate(vcpu, new StrongBox<ulong>(lapic.TdtMsr));
        apic.WriteMsr(LocalApic.TscDeadlineMsr, lapic.TdtMsr);
        return 0;
    }

    /// <summary>
    /// <c>lapic_load_regs</c>: the 1 KiB register page (<see cref="LocalApic.LoadRegisterPage"/>), then the timer re-armed
    /// from its initial count, or with the LAPIC record's deadline in TSC-deadline mode (<c>lapic_rearm</c>).
    /// </summary>
    public static long LoadLapicRegs(VirtualCpu vcpu, ReadOnlySpan<byte> page, ConditionalWeakTable<VirtualCpu, StrongBox<ulong>> deadlines)
    {
        var apic = vcpu.Apic;
        apic.LoadRegisterPage(page);
        if (apic.TimerMode == LocalApicTimerMode.TscDeadline && deadlines.TryGetValue(vcpu, out var deadline))
            apic.WriteMsr(LocalApic.TscDeadlineMsr, deadline.Value);
        return 0;
    }

    /// <summary><c>hvm_save_mtrr_msr</c>: IA32_PAT, the variable and fixed ranges, IA32_MTRRCAP and IA32_MTRR_DEF_TYPE.</summary>
    public static unsafe HvmHwMtrr SaveMtrr(VirtualCpu vcpu)
    {
        var m = new HvmHwMtrr
        {
            MsrPatCr = vcpu.Vmcs.Read(VmmKit.Vmx.VmcsField.GuestIa32Pat),
            MsrMtrrCap = MtrrMsrs.Read(vcpu, MtrrMsrs.Cap),
            MsrMtrrDefType = MtrrMsrs.Read(vcpu, MtrrMsrs.DefType),
        };
        for (int i = 0; i < 2 * HvmSave.MtrrVcnt; i++)
            m.MsrMtrrVar[i] = MtrrMsrs.Read(vcpu, MtrrMsrs.PhysBase0 + (uint)i);
        for (int i = 0; i < HvmSave.MtrrFixed; i++)
            m.MsrMtrrFixed[i] = MtrrMsrs.Read(vcpu, MtrrMsrs.FixedMsr(i));
        return m;
    }

    /// <summary>
    /// <c>hvm_load_mtrr_msr</c>: more variable ranges in <c>msr_mtrr_cap</c> than MTRR_VCNT is -EINVAL; otherwise PAT, the
    /// fixed ranges, the first VCNT variable pairs and the default type are set as a guest's WRMSR would set them, and,
    /// as in Xen, a value those rules refuse (a bad memory type, a reserved bit) is skipped, not an error. IA32_MTRRCAP
    /// itself is this hypervisor's (8 ranges, fixed, WC), not the record's.
    /// </summary>
    public static unsafe long LoadMtrr(VirtualCpu vcpu, HvmHwMtrr m)
    {
        ulong vcnt = m.MsrMtrrCap & 0xFF;
        if (vcnt > HvmSave.MtrrVcnt)
            return XenErrno.EINVAL.Negated();
        MsrExit.WritePat(vcpu, m.MsrPatCr);
        for (int i = 0; i < HvmSave.MtrrFixed; i++)
            MtrrMsrs.TryWrite(vcpu, MtrrMsrs.FixedMsr(i), m.MsrMtrrFixed[i]);
        for (int i = 0; i < (int)vcnt * 2; i++)
            MtrrMsrs.TryWrite(vcpu, MtrrMsrs.PhysBase0 + (uint)i, m.MsrMtrrVar[i]);
        MtrrMsrs.TryWrite(vcpu, MtrrMsrs.DefType, m.MsrMtrrDefType);
        return 0;
    }
}
