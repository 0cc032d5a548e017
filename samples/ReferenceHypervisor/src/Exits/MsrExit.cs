using System.Runtime.CompilerServices;
using VmmKit.Devices;
using VmmKit.Hypercall;
using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// Exit reasons 31 and 32, RDMSR and WRMSR of every MSR the MSR bitmap does not pass through (SDM Vol. 3C
/// §26.1.3). Xen's hypercall-page MSR installs the page; a few architectural MSRs are backed by VMCS fields;
/// IA32_APIC_BASE goes to the vCPU's local APIC (xAPIC only: x2APIC is not offered); the MTRRs are per-vCPU state (MtrrMsrs); the Intel MSRs Linux probes answer as
/// Xen's <c>guest_rdmsr</c>/<c>guest_wrmsr</c> (xen/arch/x86/msr.c) and vMCE (xen/arch/x86/cpu/mcheck/vmce.c) do
/// for an HVM guest; anything else raises #GP(0) in the guest, as Xen does for unknown MSRs.
/// </summary>
internal static class MsrExit
{
    private const uint Ia32ApicBase = 0x1B, Ia32MiscEnable = 0x1A0, Ia32Pat = 0x277, Ia32Efer = 0xC0000080, Ia32Tsc = 0x10;
    private const uint SysenterCs = 0x174, SysenterEsp = 0x175, SysenterEip = 0x176, FsBase = 0xC000_0100, GsBase = 0xC000_0101;
    private const ulong EferWritable = (1ul << 0) | (1ul << 8) | (1ul << 11);   // SCE, LME, NXE
    private const uint BiosSignId = 0x8B, FeatureControl = 0x3A, PlatformInfo = 0xCE, MiscFeaturesEnables = 0x140;
    private const uint McgCap = 0x179, McgStatus = 0x17A, McBankFirst = 0x400;
    private const uint PlatformId = 0x17, PerfStatus = 0x198, PerfCtl = 0x199, ThermStatus = 0x19C, Debugctl = 0x1D9;
    private const uint AmdNbCfg = 0xC001_001F, AmdEnableC1e = 0xC001_0055;

    /// <summary>
    /// IA32_MISC_ENABLE as Xen's <c>vmx_msr_read_intercept</c> gives it: the host's value (this processor's: fast
    /// strings) with BTS_UNAVAIL (bit 11) and PEBS_UNAVAIL (bit 12).
    /// </summary>
    private const ulong MiscEnableValue = 1 | (1ul << 11) | (1ul << 12);

    /// <summary>IA32_DEBUGCTL bits Xen's <c>vmx_msr_write_intercept</c> takes without vPMU BTS or RTM: LBR (0), BTF (1).</summary>
    private const ulong DebugctlLbr = 1, DebugctlBtf = 2;

    /// <summary>
    /// Distinct MSR accesses (MSR, read or write) of a domain whose #GP is logged; past them one line says the rest are
    /// not. A guest that catches the #GP and tries again in a loop cannot grow the host's log without end (Xen's message
    /// for it is a guest message, rate-limited: XENLOG_GUEST and printk_ratelimit, xen/drivers/char/console.c).
    /// </summary>
    internal const int MaxLoggedFaults = 64;

    private static readonly ConditionalWeakTable<Domain, HashSet<ulong>> LoggedFaults = new();

    /// <summary>IA32_FEATURE_CONTROL as Xen reports it to a guest without VMX or LMCE: locked, nothing enabled.</summary>
    private const ulong FeatureControlLock = 1;

    /// <summary>Banks of Xen's virtual machine-check architecture (vmce.c <c>GUEST_MC_BANK_NUM</c>).</summary>
    private const int GuestMcBanks = 2;

    /// <summary>Xen's <c>INTEL_GUEST_MCG_CAP</c>: MCG_TES_P (bit 11), MCG_SER_P (bit 24) and the bank count.</summary>
    private const ulong GuestMcgCap = (1ul << 11) | (1ul << 24) | GuestMcBanks;

    /// <summary>RDMSR: ECX names the MSR; the value goes to EDX:EAX.</summary>
    public static ExitAction HandleRead(VirtualCpu vcpu, in VmExit exit)
    {
        ref var r = ref vcpu.Registers;
        uint msr = (uint)r.Rcx;
        ulong value = 0;
        switch (msr)
        {
            case Ia32Efer: value = vcpu.Vmcs.Read(VmcsField.GuestIa32Efer); break;
            case Ia32Pat: value = vcpu.Vmcs.Read(VmcsField.GuestIa32Pat); break;
            // Guest state the VMCS holds (SDM Vol. 3C §25.4.1); the other processor-kept MSRs (STAR, LSTAR, CSTAR,
            // FMASK, KERNEL_GS_BASE, TSC_AUX) need the MSR bitmap (VmmKit.Vmx.MsrBitmap) to reach the processor.
            case SysenterCs: value = vcpu.Vmcs.Read(VmcsField.GuestIa32SysenterCs); break;
            case SysenterEsp: value = vcpu.Vmcs.Read(VmcsField.GuestIa32SysenterEsp); break;
            case SysenterEip: value = vcpu.Vmcs.Read(VmcsField.GuestIa32SysenterEip); break;
            case FsBase: value = vcpu.Vmcs.Read(VmcsField.GuestFsBase); break;
            case GsBase: value = vcpu.Vmcs.Read(VmcsField.GuestGsBase); break;
            case Ia32ApicBase: Devices.VcpuApic.TryAccessApicBase(vcpu, write: false, ref value); break;
            case Ia32MiscEnable: value = MiscEnableValue; break;
            case Debugctl: value = vcpu.Vmcs.Read(VmcsField.GuestIa32Debugctl); break;
            // guest_rdmsr (msr.c) for an Intel guest: PLATFORM_ID is the host's (this processor has no platform bits: 0),
            // PERF_STATUS/PERF_CTL and THERM_STATUS read as zero; hvm_msr_read_intercept reads AMD's NB_CFG and
            // K8_ENABLE_C1E as zero for a guest migrated to an Intel host.
            case PlatformId or PerfStatus or PerfCtl or ThermStatus or AmdNbCfg or AmdEnableC1e: value = 0; break;
            case Ia32Tsc: value = GuestTime.ReadTsc(vcpu); break;
            case RdtscExit.Ia32TscAux: value = vcpu.TscAux; break;   // intercepted on the threaded scheduler only
            case var m when MtrrMsrs.Owns(m): value = MtrrMsrs.Read(vcpu, msr); break;
            // Xen forwards the host's microcode revision; this processor has no microcode: 0.
            case BiosSignId: value = 0; break;
            case FeatureControl: value = FeatureControlLock; break;
            // No CPUID faulting is offered (PLATFORM_INFO bit 31 clear), so MISC_FEATURES_ENABLES stays 0.
            case PlatformInfo or MiscFeaturesEnables: value = 0; break;
            case McgCap: value = GuestMcgCap; break;
            case McgStatus: value = 0; break;
            // MCi_CTL reads all ones (every error reported), MCi_STATUS/ADDR/MISC 0: no machine check ever happened.
            case >= McBankFirst and < McBankFirst + (4 * GuestMcBanks): value = (msr & 3) == 0 ? ulong.MaxValue : 0; break;
            default:
                LogFault(vcpu, msr, write: false, 0);
                vcpu.InjectGeneralProtection();
                return ExitAction.Resume;
        }

        r.Rax = (uint)value;
        r.Rdx = value >> 32;
        vcpu.AdvanceRip(in exit);
        return ExitAction.Resume;
    }

    /// <summary>WRMSR: ECX names the MSR, EDX:EAX holds the value.</summary>
    public static ExitAction HandleWrite(VirtualCpu vcpu, in VmExit exit)
    {
        ref var r = ref vcpu.Registers;
        uint msr = (uint)r.Rcx;
        ulong value = ((r.Rdx & 0xFFFF_FFFF) << 32) | (r.Rax & 0xFFFF_FFFF);
        bool ok = msr switch
        {
            HypercallPage.MsrIndex => HypercallPage.TryInstall(vcpu.Physical, value),   // this thread's own accessor and cache
            Ia32Efer => WriteEfer(vcpu, value),
            Ia32Pat => WritePat(vcpu, value),
            // vmx_msr_write_intercept writes the value to the 32-bit GUEST_SYSENTER_CS field.
            SysenterCs => WriteField(vcpu, VmcsField.GuestIa32SysenterCs, value & 0xFFFF_FFFF),
            SysenterEsp => Canonical(value) && WriteField(vcpu, VmcsField.GuestIa32SysenterEsp, value),
            SysenterEip => Canonical(value) && WriteField(vcpu, VmcsField.GuestIa32SysenterEip, value),
            FsBase => Canonical(value) && WriteField(vcpu, VmcsField.GuestFsBase, value),
            GsBase => Canonical(value) && WriteField(vcpu, VmcsField.GuestGsBase, value),
            Ia32ApicBase => Devices.VcpuApic.TryAccessApicBase(vcpu, write: true, ref value),
            // vmx_msr_write_intercept: a write of the value read is dropped, any other is #GP.
            Ia32MiscEnable => value == MiscEnableValue,
            Debugctl => WriteDebugctl(vcpu, value),
            // guest_wrmsr drops PERF_CTL; hvm_msr_write_intercept ignores NB_CFG.
            PerfCtl or AmdNbCfg => true,
            // SDM Vol. 4: IA32_TSC_AUX bits 63:32 are reserved (#GP); intercepted on the threaded scheduler only.
            RdtscExit.Ia32TscAux => (value >> 32) == 0 && SetTscAux(vcpu, (uint)value),
            var m when MtrrMsrs.Owns(m) => MtrrMsrs.TryWrite(vcpu, msr, value),
            // Intel's "write 0, CPUID, read" microcode-revision sequence: only 0 may be written (Xen's guest_wrmsr).
            BiosSignId => value == 0,
            MiscFeaturesEnables => value == 0,
            // vMCE: MCG_STATUS and the banks' registers take writes (Xen keeps them per vCPU; nothing reads them back here).
            McgStatus => true,
            >= McBankFirst and < McBankFirst + (4 * GuestMcBanks) => true,
            _ => false,
        };
        if (!ok)
        {
            LogFault(vcpu, msr, write: true, value);
            vcpu.InjectGeneralProtection();
            return ExitAction.Resume;
        }

        vcpu.AdvanceRip(in exit);
        return ExitAction.Resume;
    }

    /// <summary>Logs an MSR access that raised #GP, once per distinct access and at most <see cref="MaxLoggedFaults"/> per domain.</summary>
    private static void LogFault(VirtualCpu vcpu, uint msr, bool write, ulong value)
    {
        var domain = vcpu.Domain;
        var seen = LoggedFaults.GetValue(domain, _ => []);
        lock (seen)
        {
            if (seen.Count > MaxLoggedFaults || !seen.Add(((ulong)msr << 1) | (write ? 1ul : 0)))
                return;
            if (seen.Count > MaxLoggedFaults)
            {
                domain.Machine.Log($"d{domain.Id}v{vcpu.Id}: more MSR accesses raised #GP; not logged");
                return;
            }
        }

        domain.Machine.Log(write
            ? $"d{domain.Id}v{vcpu.Id}: WRMSR 0x{msr:x} <- 0x{value:x} -> #GP"
            : $"d{domain.Id}v{vcpu.Id}: RDMSR 0x{msr:x} -> #GP");
    }

    /// <summary>
    /// vmx_msr_write_intercept: #GP for a bit other than LBR and BTF; LBR is dropped (no model-specific LBRs: it reads 0,
    /// as the architectural-LBR rule Xen follows). BTF is kept; the processor does not single-step on branches.
    /// </summary>
    private static bool WriteDebugctl(VirtualCpu vcpu, ulong value)
    {
        if ((value & ~(DebugctlLbr | DebugctlBtf)) != 0)
            return false;
        vcpu.Vmcs.Write(VmcsField.GuestIa32Debugctl, value & ~DebugctlLbr);
        return true;
    }

    private static bool SetTscAux(VirtualCpu vcpu, uint value)
    {
        vcpu.TscAux = value;
        return true;
    }

    private static bool Canonical(ulong v) => (ulong)(((long)v << 16) >> 16) == v;

    private static bool WriteField(VirtualCpu vcpu, VmcsField field, ulong value)
    {
        vcpu.Vmcs.Write(field, value);
        return true;
    }

    private static bool WriteEfer(VirtualCpu vcpu, ulong value)
    {
        // LMA is read-only: a read-modify-write in long mode carries it back and it is ignored (SDM Vol. 3A §2.2.1);
        // LME cannot change while CR0.PG = 1.
        const ulong lmaBit = 1ul << 10, lmeBit = 1ul << 8;
        if ((value & ~(EferWritable | lmaBit)) != 0)
            return false;
        ulong current = vcpu.Vmcs.Read(VmcsField.GuestIa32Efer);
        if ((vcpu.Vmcs.Read(VmcsField.GuestCr0) & (1ul << 31)) != 0 && ((value ^ current) & lmeBit) != 0)
            return false;
        if ((value & lmeBit) != 0 && (current & lmeBit) == 0)
        {
            // Xen's hvm_set_efer: when LME becomes set, CS.L is cleared, keeping the guest in compatibility mode until it
            // reloads CS (a legacy-mode CS may carry L; paging on with it would be #GP, SDM Vol. 3A §10.8.5).
            const ulong csL = 1ul << 13;
            vcpu.Vmcs.Write(VmcsField.GuestCsAccessRights, vcpu.Vmcs.Read(VmcsField.GuestCsAccessRights) & ~csL);
        }

        vcpu.Vmcs.Write(VmcsField.GuestIa32Efer, (value & EferWritable) | (current & lmaBit));
        return true;
    }

    internal static bool WritePat(VirtualCpu vcpu, ulong value)
    {
        // Each of the 8 entries must be a valid memory type: 0, 1, 4, 5, 6 or 7 (SDM Vol. 3A §13.12.2).
        for (int i = 0; i < 8; i++)
        {
            ulong type = (value >> (8 * i)) & 0xFF;
            if (type is 2 or 3 or > 7)
                return false;
        }

        vcpu.Vmcs.Write(VmcsField.GuestIa32Pat, value);
        return true;
    }
}
