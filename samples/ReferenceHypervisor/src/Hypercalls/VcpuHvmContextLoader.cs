using VmmKit.Hypercall;
using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor.Hypercalls;

/// <summary>
/// Checks a <see cref="VcpuHvmContext"/> and loads it into a vCPU's VMCS, as Xen's <c>arch_set_info_hvm_guest</c>
/// (xen/arch/x86/hvm/domain.c) does for VCPUOP_initialise: the segment rules of its <c>check_segment</c>, EIP inside
/// CS, SS.DPL = CS.DPL, DS/ES.DPL not above CS.DPL, sane CR0/CR4/EFER; for the 64-bit mode paging, PAE, LME and a
/// canonical RIP. Anything else is -EINVAL and changes nothing. The vCPU is then initialised and stays down until VCPUOP_up.
/// </summary>
internal static class VcpuHvmContextLoader
{
    private const ulong Cr0Pe = 1, Cr0Pg = 1ul << 31;
    private const ulong Cr4Pae = 1ul << 5;
    private const ulong EferSce = 1, EferLme = 1ul << 8, EferLma = 1ul << 10, EferNxe = 1ul << 11;

    /// <summary>The RFLAGS bits a guest may set (SDM Vol. 1 §3.4.3): everything architectural except VM (no virtual-8086 start).</summary>
    private const ulong RflagsAllowed = 0x3D_7FD5;

    /// <summary>Loads <paramref name="context"/> into <paramref name="vcpu"/>; 0 or -EINVAL.</summary>
    public static long Load(VirtualCpu vcpu, in VcpuHvmContext context)
    {
        return context.Mode switch
        {
            VcpuHvmContext.Mode32 => Load32(vcpu, in context.X86_32),
            VcpuHvmContext.Mode64 => Load64(vcpu, in context.X86_64),
            _ => Invalid,
        };
    }

    private static long Invalid => XenErrno.EINVAL.Negated();

    private static long Load32(VirtualCpu vcpu, in VcpuHvmX86_32 r)
    {
        if (!TryConvert(r.CsAr, SegmentKind.Code, out uint cs) || !TryConvert(r.DsAr, SegmentKind.Data, out uint ds)
            || !TryConvert(r.SsAr, SegmentKind.Stack, out uint ss) || !TryConvert(r.EsAr, SegmentKind.Data, out uint es)
            || !TryConvert(r.TrAr, SegmentKind.Task, out uint tr))
            return Invalid;
        if (!LimitOk(r.CsLimit, cs) || !LimitOk(r.DsLimit, ds) || !LimitOk(r.SsLimit, ss) || !LimitOk(r.EsLimit, es) || !LimitOk(r.TrLimit, tr))
            return Invalid;
        ulong csLimit = ScaledLimit(r.CsLimit, cs);
        if (r.Eip > csLimit || Dpl(ss) != Dpl(cs) || (Present(ds) && Dpl(ds) > Dpl(cs)) || (Present(es) && Dpl(es) > Dpl(cs)))
            return Invalid;
        ulong efer = r.Efer;
        if ((efer & EferLma) != 0 && (efer & EferLme) == 0)
            return Invalid;
        if (!TryCheckControl(vcpu, r.Cr0, r.Cr4, ref efer))
            return Invalid;
        bool longMode = (efer & EferLma) != 0, csL = (cs & (1u << 13)) != 0, csD = (cs & (1u << 14)) != 0;
        if (csL && (!longMode || csD))
            return Invalid;                               // CS.L only in IA-32e mode, never with D (SDM Vol. 3C §27.3.1.2)

        LoadControl(vcpu, r.Cr0, r.Cr3, r.Cr4, efer);
        var vmcs = vcpu.Vmcs;
        VcpuLifecycle.Segment(vmcs, 1, 0, r.CsBase, (uint)csLimit, cs);
        VcpuLifecycle.Segment(vmcs, 3, 0, r.DsBase, (uint)ScaledLimit(r.DsLimit, ds), ds);
        VcpuLifecycle.Segment(vmcs, 2, 0, r.SsBase, (uint)ScaledLimit(r.SsLimit, ss), ss);
        VcpuLifecycle.Segment(vmcs, 0, 0, r.EsBase, (uint)ScaledLimit(r.EsLimit, es), es);
        VcpuLifecycle.Segment(vmcs, 4, 0, 0, 0xFFFF, 0x93);
        VcpuLifecycle.Segment(vmcs, 5, 0, 0, 0xFFFF, 0x93);
        VcpuLifecycle.Segment(vmcs, 6, 0, 0, 0xFFFF, 0x82);
        VcpuLifecycle.Segment(vmcs, 7, 0, r.TrBase, (uint)ScaledLimit(r.TrLimit, tr), tr);
        VcpuLifecycle.ResetCommon(vcpu, r.Eip, r.Esp, r.Eflags & RflagsAllowed);
        ref var g = ref vcpu.Registers;
        (g.Rax, g.Rcx, g.Rdx, g.Rbx, g.Rbp, g.Rsi, g.Rdi) = (r.Eax, r.Ecx, r.Edx, r.Ebx, r.Ebp, r.Esi, r.Edi);
        return 0;
    }

    private static long Load64(VirtualCpu vcpu, in VcpuHvmX86_64 r)
    {
        // Xen: "RIP contains a non-canonical address", "CR0 doesn't have paging enabled", "CR4 doesn't have PAE enabled",
        // "EFER doesn't have LME enabled".
        if ((ulong)(((long)r.Rip << 16) >> 16) != r.Rip || (r.Cr0 & Cr0Pg) == 0 || (r.Cr4 & Cr4Pae) == 0 || (r.Efer & EferLme) == 0)
            return Invalid;
        ulong efer = r.Efer;
        if (!TryCheckControl(vcpu, r.Cr0, r.Cr4, ref efer))
            return Invalid;

        LoadControl(vcpu, r.Cr0, r.Cr3, r.Cr4, efer);
        var vmcs = vcpu.Vmcs;
        // Flat 64-bit segments (Xen: CS attr 0xa9b, data 0xc93, TR 0x8b with limit 0x67).
        VcpuLifecycle.Segment(vmcs, 1, 0, 0, 0xFFFF_FFFF, 0xA09B);
        foreach (int s in (ReadOnlySpan<int>)[0, 2, 3, 4, 5])
            VcpuLifecycle.Segment(vmcs, s, 0, 0, 0xFFFF_FFFF, 0xC093);
        VcpuLifecycle.Segment(vmcs, 6, 0, 0, 0xFFFF, 0x82);
        VcpuLifecycle.Segment(vmcs, 7, 0, 0, 0x67, 0x8B);
        VcpuLifecycle.ResetCommon(vcpu, r.Rip, r.Rsp, r.Rflags & RflagsAllowed);
        ref var g = ref vcpu.Registers;
        (g.Rax, g.Rcx, g.Rdx, g.Rbx, g.Rbp, g.Rsi, g.Rdi) = (r.Rax, r.Rcx, r.Rdx, r.Rbx, r.Rbp, r.Rsi, r.Rdi);
        return 0;
    }

    /// <summary>
    /// CR0 bits 63:32 clear and PG only with PE (MOV CR0's #GP rules, SDM Vol. 3A §2.5); CR4 only bits the guest may set
    /// (Xen's <c>hvm_cr4_guest_valid_bits</c>, as <c>arch_set_info_hvm_guest</c> and <c>hvm_load_cpu_ctxt</c> check: never
    /// VMXE, no nested VMX); EFER only SCE, LME, LMA, NXE. LME with paging gives LMA (Xen sets it), and IA-32e paging needs
    /// PAE (Xen's <c>hvm_efer_valid</c>).
    /// </summary>
    private static bool TryCheckControl(VirtualCpu vcpu, ulong cr0, ulong cr4, ref ulong efer)
    {
        if ((cr0 >> 32) != 0 || ((cr0 & Cr0Pg) != 0 && (cr0 & Cr0Pe) == 0))
            return false;
        if ((cr4 & ~GuestControlRegisters.Cr4GuestValidBits) != 0)
            return false;
        if ((efer & ~(EferSce | EferLme | EferLma | EferNxe)) != 0)
            return false;
        if ((efer & EferLme) != 0 && (cr0 & Cr0Pg) != 0)
            efer |= EferLma;
        return (efer & EferLma) == 0 || ((cr0 & Cr0Pg) != 0 && (cr4 & Cr4Pae) != 0);
    }

    private static void LoadControl(VirtualCpu vcpu, ulong cr0, ulong cr3, ulong cr4, ulong efer) =>
        VcpuLifecycle.SetCrs(vcpu, vcpu.Domain.Machine.Capabilities.AdjustCr0(cr0, unrestrictedGuest: true), cr0, cr3, cr4, efer);

    /// <summary>A data segment attribute (FS, GS) in Xen's format to VMX access rights, by <c>check_segment</c>'s rules; 0 is unusable.</summary>
    internal static bool TryConvertData(ushort attr, out uint accessRights) => TryConvert(attr, SegmentKind.Data, out accessRights);

    private enum SegmentKind
    {
        Code,
        Data,
        Stack,
        Task,
    }

    /// <summary>
    /// Xen's <c>check_segment</c>: attribute bits 15:12 clear; a null attribute only for DS and ES (then unusable);
    /// TR a busy 32-bit TSS; the others code or data, present; CS code, SS writable data, DS/ES readable. The result is
    /// the VMX access-rights format (SDM Vol. 3C §25.4.1), accessed bit set.
    /// </summary>
    private static bool TryConvert(ushort attr, SegmentKind kind, out uint accessRights)
    {
        accessRights = 1u << 16;                          // unusable
        if ((attr & 0xF000) != 0)
            return false;
        if (attr == 0)
            return kind == SegmentKind.Data;
        int type = attr & 0xF;
        bool s = (attr & 0x10) != 0, present = (attr & 0x80) != 0;
        bool ok = kind switch
        {
            SegmentKind.Task => !s && type == 11,
            SegmentKind.Code => s && (type & 8) != 0,
            SegmentKind.Stack => s && (type & 8) == 0 && (type & 2) != 0,
            _ => s && ((type & 8) == 0 || (type & 2) != 0),
        };
        if (!ok || !present)
            return false;
        accessRights = (uint)(attr & 0xFF) | ((uint)(attr & 0xF00) << 4) | (s ? 1u : 0u);
        return true;
    }

    /// <summary>The limit in bytes: with G set, 4 KiB units (a byte-granular limit above 1 MiB cannot be loaded, SDM Vol. 3C §27.3.1.2).</summary>
    private static ulong ScaledLimit(uint limit, uint accessRights) =>
        (accessRights & (1u << 15)) != 0 ? (((ulong)limit << 12) | 0xFFF) & 0xFFFF_FFFF : limit;

    private static bool LimitOk(uint limit, uint accessRights) => (accessRights & (1u << 15)) != 0 || limit <= 0xF_FFFF;

    private static int Dpl(uint accessRights) => (int)((accessRights >> 5) & 3);

    private static bool Present(uint accessRights) => (accessRights & (1u << 16)) == 0;
}
