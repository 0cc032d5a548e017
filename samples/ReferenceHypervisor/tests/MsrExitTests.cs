using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// RDMSR/WRMSR exits (src/Exits/MsrExit.cs) against Xen 4.17's <c>hvm_msr_read_intercept</c>/<c>hvm_msr_write_intercept</c>
/// and <c>hvm_set_efer</c> (xen/arch/x86/hvm/hvm.c), <c>vmx_msr_read_intercept</c>/<c>vmx_msr_write_intercept</c>
/// (xen/arch/x86/hvm/vmx/vmx.c) and <c>guest_rdmsr</c>/<c>guest_wrmsr</c> (xen/arch/x86/msr.c) for an Intel HVM guest:
/// the exit handler is called on the vCPU of a domain that never ran.
/// </summary>
public class MsrExitTests
{
    private const ulong Rip = 0x100000;

    private static (Machine Machine, VirtualCpu Vcpu) Build()
    {
        var (machine, d) = HypercallMachine.Build();
        d.Vcpus[0].Vmcs.Write(VmcsField.GuestRip, Rip);
        return (machine, d.Vcpus[0]);
    }

    /// <summary>RDMSR <paramref name="msr"/>: the value, or null for #GP(0) (then RIP stays).</summary>
    private static ulong? Read(VirtualCpu v, uint msr)
    {
        v.Vmcs.Write(VmcsField.VmEntryInterruptionInformation, 0);
        v.Vmcs.Write(VmcsField.GuestRip, Rip);
        v.Registers.Rcx = msr;
        var exit = VmExit.Exit(VmxExitReason.Rdmsr) with { InstructionLength = 2 };
        Assert.Equal(ExitAction.Resume, MsrExit.HandleRead(v, in exit));
        return Faulted(v) ? null : (v.Registers.Rdx << 32) | (uint)v.Registers.Rax;
    }

    /// <summary>WRMSR <paramref name="msr"/> = <paramref name="value"/>: false for #GP(0).</summary>
    private static bool Write(VirtualCpu v, uint msr, ulong value)
    {
        v.Vmcs.Write(VmcsField.VmEntryInterruptionInformation, 0);
        v.Vmcs.Write(VmcsField.GuestRip, Rip);
        (v.Registers.Rcx, v.Registers.Rax, v.Registers.Rdx) = (msr, (uint)value, value >> 32);
        var exit = VmExit.Exit(VmxExitReason.Wrmsr) with { InstructionLength = 2 };
        Assert.Equal(ExitAction.Resume, MsrExit.HandleWrite(v, in exit));
        return !Faulted(v);
    }

    private static bool Faulted(VirtualCpu v)
    {
        bool gp = (v.Vmcs.Read(VmcsField.VmEntryInterruptionInformation) & 0x8000_00FF) == 0x8000_000D;
        Assert.Equal(gp ? Rip : Rip + 2, v.Vmcs.Read(VmcsField.GuestRip));
        return gp;
    }

    [Fact]
    public void Setting_efer_lme_clears_cs_l_so_the_guest_stays_in_compatibility_mode()
    {
        // hvm_set_efer: "When LME becomes set, clobber %cs.L to keep the guest firmly in compatibility mode until it
        // reloads %cs itself." A legacy-mode CS with L set was kept, and turning paging on then raised #GP.
        var (machine, v) = Build();
        using var owner = machine;
        v.Vmcs.Write(VmcsField.GuestCsAccessRights, 0xE09B);       // L and D set, as a 32-bit guest may load it
        Assert.True(Write(v, 0xC000_0080, 1ul << 8));
        Assert.Equal(0xC09Bul, v.Vmcs.Read(VmcsField.GuestCsAccessRights));
        Assert.Equal(1ul << 8, Read(v, 0xC000_0080));
    }

    [Fact]
    public void Sysenter_cs_keeps_32_bits()
    {
        // vmx_msr_write_intercept writes the value to the 32-bit GUEST_SYSENTER_CS field; only 16 bits were kept.
        var (machine, v) = Build();
        using var owner = machine;
        Assert.True(Write(v, 0x174, 0xFFFF_FFFF_1234_5678));
        Assert.Equal(0x1234_5678ul, Read(v, 0x174));
    }

    [Fact]
    public void Misc_enable_reads_bts_and_pebs_unavailable_and_takes_only_the_value_it_reads()
    {
        // vmx_msr_read_intercept: the host's MISC_ENABLE (here: fast strings) | BTS_UNAVAIL | PEBS_UNAVAIL;
        // vmx_msr_write_intercept: "Silently drop writes that don't change the reported value", #GP for any other.
        var (machine, v) = Build();
        using var owner = machine;
        const ulong expected = 1 | (1ul << 11) | (1ul << 12);
        Assert.Equal(expected, Read(v, 0x1A0));
        Assert.True(Write(v, 0x1A0, expected));
        Assert.False(Write(v, 0x1A0, expected | (1ul << 22)));
        Assert.False(Write(v, 0x1A0, 0));
    }

    [Fact]
    public void Debugctl_takes_btf_drops_lbr_and_refuses_the_rest()
    {
        // vmx_msr_read_intercept reads GUEST_IA32_DEBUGCTL; vmx_msr_write_intercept: reserved = ~(LBR | BTF) without
        // vPMU BTS or RTM, #GP for them; LBR dropped without model-specific LBRs. Both raised #GP.
        var (machine, v) = Build();
        using var owner = machine;
        Assert.Equal(0ul, Read(v, 0x1D9));
        Assert.True(Write(v, 0x1D9, 3));
        Assert.Equal(2ul, Read(v, 0x1D9));
        Assert.False(Write(v, 0x1D9, 1ul << 6));
        Assert.Equal(2ul, Read(v, 0x1D9));
    }

    [Theory]
    [InlineData(0x17u)]                    // IA32_PLATFORM_ID (guest_rdmsr: the host's; this processor has none: 0)
    [InlineData(0x198u)]                   // IA32_PERF_STATUS (guest_rdmsr: read as zero)
    [InlineData(0x199u)]                   // IA32_PERF_CTL
    [InlineData(0x19Cu)]                   // IA32_THERM_STATUS
    [InlineData(0xC001_001Fu)]             // AMD NB_CFG (hvm_msr_read_intercept: "may be accessed ... migrated to an Intel host")
    [InlineData(0xC001_0055u)]             // AMD K8_ENABLE_C1E
    public void The_msrs_xen_reads_as_zero_for_an_intel_guest_read_zero(uint msr)
    {
        var (machine, v) = Build();
        using var owner = machine;
        Assert.Equal(0ul, Read(v, msr));
    }

    [Theory]
    [InlineData(0x199u, true)]             // PERF_CTL: guest_wrmsr drops it
    [InlineData(0xC001_001Fu, true)]       // NB_CFG: hvm_msr_write_intercept ignores it
    [InlineData(0x17u, false)]             // read-only in guest_wrmsr
    [InlineData(0x198u, false)]
    [InlineData(0x19Cu, false)]
    [InlineData(0xC001_0055u, false)]      // not written by hvm_msr_write_intercept nor vmx_msr_write_intercept
    public void Writes_to_those_msrs_are_dropped_or_refused_as_xen_does(uint msr, bool taken)
    {
        var (machine, v) = Build();
        using var owner = machine;
        Assert.Equal(taken, Write(v, msr, 5));
        Assert.Equal(0ul, Read(v, msr));
    }

    [Fact]
    public void The_xapic_window_cannot_move_while_the_apic_is_enabled()
    {
        // guest_wrmsr_apic_base (xen/arch/x86/hvm/vlapic.c): in xAPIC mode (EN set, EXTD clear) the MMIO window must stay
        // at 0xFEE00000, else #GP; a disabled APIC may hold another address. The window moved.
        var (machine, v) = Build();
        using var owner = machine;
        const ulong en = 1ul << 11, bsp = 1ul << 8;
        Assert.False(Write(v, 0x1B, 0xFED0_0000 | en | bsp));
        Assert.Equal(0xFEE0_0000 | en | bsp, Read(v, 0x1B) & ~(1ul << 10));
        Assert.True(Write(v, 0x1B, 0xFED0_0000 | bsp));
        Assert.False(Write(v, 0x1B, 0xFED0_0000 | en | bsp));
        Assert.True(Write(v, 0x1B, 0xFEE0_0000 | en | bsp));
    }
}
