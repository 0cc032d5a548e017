using VmmKit.Vmx;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// MOV to CR0/CR4, CLTS, LMSW and MOV to CR8 exits (src/Exits/ControlRegisterExit.cs) against Xen 4.17's
/// <c>vmx_cr_access</c> (xen/arch/x86/hvm/vmx/vmx.c), <c>hvm_mov_to_cr</c>, <c>hvm_set_cr0</c> and <c>hvm_set_cr4</c>
/// (xen/arch/x86/hvm/hvm.c): the exit handler is called on the vCPU of a domain that never ran, with the VMCS set as the
/// guest would have it; a few run a guest that catches the #GP.
/// </summary>
public class ControlRegisterExitTests
{
    private const ulong Pe = 1, Et = 1ul << 4, Ne = 1ul << 5, Nw = 1ul << 29, Cd = 1ul << 30, Pg = 1ul << 31;
    private const ulong Pae = 1ul << 5, Mce = 1ul << 6, Umip = 1ul << 11, Vmxe = 1ul << 13, Pcide = 1ul << 17, Pke = 1ul << 22;
    private const ulong Lme = 1ul << 8, Lma = 1ul << 10;
    private const uint Code64 = 0xA09B, Code32 = 0xC09B;
    private const ulong Rip = 0x100000;

    private static (Machine Machine, VirtualCpu Vcpu) Build()
    {
        var (machine, d) = HypercallMachine.Build();
        var v = d.Vcpus[0];
        v.Vmcs.Write(VmcsField.GuestRip, Rip);
        return (machine, v);
    }

    /// <summary>The exit of MOV CR<paramref name="cr"/>, RAX (3 bytes) with RAX = <paramref name="value"/>.</summary>
    private static ExitAction MovToCr(VirtualCpu v, int cr, ulong value)
    {
        v.Registers.Rax = value;
        var exit = VmExit.Exit(VmxExitReason.ControlRegisterAccess, (ulong)cr) with { InstructionLength = 3 };
        return ControlRegisterExit.Handle(v, in exit);
    }

    /// <summary>#GP(0) pending for the next entry, and the instruction not skipped.</summary>
    private static bool Faulted(VirtualCpu v)
    {
        ulong info = v.Vmcs.Read(VmcsField.VmEntryInterruptionInformation);
        bool gp = (info & 0x8000_00FF) == 0x8000_000D;
        Assert.Equal(gp ? Rip : Rip + 3, v.Vmcs.Read(VmcsField.GuestRip));
        return gp;
    }

    /// <summary>The vCPU in IA-32e mode: paging, PAE, LME and LMA, CS <paramref name="cs"/> (64-bit or compatibility).</summary>
    private static void EnterLongMode(VirtualCpu v, uint cs = Code64, ulong cr3 = 0x1000)
    {
        VcpuLifecycle.SetCrs(v, Pe | Et | Ne | Pg, Pe | Et | Pg, cr3, Pae, Lme | Lma);
        v.Vmcs.Write(VmcsField.GuestCsAccessRights, cs);
    }

    [Theory]
    [InlineData(Vmxe)]                   // VMXE: not without nested virtualization
    [InlineData(Vmxe | Pke)]             // PKE: CPUID offers no PKU (the register would fail the next VM entry)
    [InlineData(Mce)]                    // MCE: CPUID offers neither MCE nor MCA
    [InlineData(Umip)]                   // UMIP: CPUID.7:ECX.UMIP clear
    [InlineData(1ul << 63)]
    [InlineData(Pcide)]                  // PCIDE outside IA-32e mode
    public void A_cr4_value_xen_refuses_is_a_general_protection_fault_and_changes_nothing(ulong value)
    {
        // hvm_set_cr4: a bit outside hvm_cr4_guest_valid_bits, or PCIDE 0 -> 1 while EFER.LMA = 0, is X86EMUL_EXCEPTION,
        // which hvm_mov_to_cr turns into #GP(0). Before, the handler stored the value: the guest read VMXE back, or the
        // register kept a bit VMX refuses and the next VM entry crashed the domain.
        var (machine, v) = Build();
        using var owner = machine;
        ulong real = v.Vmcs.Read(VmcsField.GuestCr4);
        Assert.Equal(ExitAction.Resume, MovToCr(v, 4, value));
        Assert.True(Faulted(v));
        Assert.Equal(0ul, GuestControlRegisters.Read(v.Vmcs, 4));
        Assert.Equal(real, v.Vmcs.Read(VmcsField.GuestCr4));
    }

    [Fact]
    public void The_cr4_bits_the_guest_may_not_set_are_host_owned_so_setting_one_exits()
    {
        // vmx_update_guest_cr: CR4_GUEST_HOST_MASK = HVM_CR4_HOST_MASK | PKE | ~hvm_cr4_guest_valid_bits. A guest-owned
        // MCE or UMIP was set by the processor without an exit, where Xen raises #GP.
        var (machine, v) = Build();
        using var owner = machine;
        ulong mask = v.Vmcs.Read(VmcsField.Cr4GuestHostMask);
        Assert.Equal(Vmxe | Mce | Umip | Pke, mask & (Vmxe | Mce | Umip | Pke));
        Assert.Equal(0ul, mask & (Pae | Pcide | (1ul << 9) | (1ul << 10) | (1ul << 18) | (1ul << 7)));
        Assert.Equal(Ne, v.Vmcs.Read(VmcsField.Cr0GuestHostMask));
    }

    [Theory]
    [InlineData(Pe | Et | Nw)]                 // NW without CD (the processor's rule, SDM Vol. 2A MOV CR0)
    [InlineData(Pe | Et | (1ul << 32))]        // bits 63:32
    [InlineData(Et | Pg)]                      // PG without PE
    public void A_cr0_value_the_processor_refuses_is_a_general_protection_fault_also_when_it_exits(ulong value)
    {
        var (machine, v) = Build();
        using var owner = machine;
        Assert.Equal(ExitAction.Resume, MovToCr(v, 0, value));
        Assert.True(Faulted(v));
        Assert.Equal(Pe | Et, GuestControlRegisters.Read(v.Vmcs, 0));
        Assert.Equal(Pe | Et | Ne, v.Vmcs.Read(VmcsField.GuestCr0));
    }

    [Fact]
    public void Paging_on_with_efer_lme_but_without_cr4_pae_is_a_general_protection_fault()
    {
        // hvm_set_cr0: "Enable paging before PAE enable" is X86EMUL_EXCEPTION. Before, EFER.LMA and the IA-32e mode
        // guest control were set without PAE, and the next VM entry failed: the domain crashed.
        var (machine, v) = Build();
        using var owner = machine;
        v.Vmcs.Write(VmcsField.GuestIa32Efer, Lme);
        Assert.Equal(ExitAction.Resume, MovToCr(v, 0, Pe | Et | Pg));
        Assert.True(Faulted(v));
        Assert.Equal(Lme, v.Vmcs.Read(VmcsField.GuestIa32Efer));
        Assert.Equal(0ul, v.Vmcs.Read(VmcsField.VmEntryControls) & (uint)VmEntryControls.Ia32eModeGuest);
        Assert.Equal(Pe | Et, GuestControlRegisters.Read(v.Vmcs, 0));
    }

    [Fact]
    public void Paging_on_with_efer_lme_and_pae_enters_ia32e_mode()
    {
        var (machine, v) = Build();
        using var owner = machine;
        VcpuLifecycle.SetCrs(v, Pe | Et | Ne, Pe | Et, 0x1000, Pae, Lme);
        v.Vmcs.Write(VmcsField.GuestCsAccessRights, Code32);
        Assert.Equal(ExitAction.Resume, MovToCr(v, 0, Pe | Et | Pg));
        Assert.False(Faulted(v));
        Assert.Equal(Lme | Lma, v.Vmcs.Read(VmcsField.GuestIa32Efer));
        Assert.NotEqual(0ul, v.Vmcs.Read(VmcsField.VmEntryControls) & (uint)VmEntryControls.Ia32eModeGuest);
        Assert.Equal(Pe | Et | Pg, GuestControlRegisters.Read(v.Vmcs, 0));
        Assert.Equal(Pe | Et | Ne | Pg, v.Vmcs.Read(VmcsField.GuestCr0));
    }

    [Fact]
    public void Paging_off_in_compatibility_mode_leaves_ia32e_mode()
    {
        // hvm_set_cr0: "When CR0.PG is cleared, LMA is cleared immediately." Before, LMA and the IA-32e mode guest
        // control stayed set with paging off, which no VM entry accepts: the domain crashed.
        var (machine, v) = Build();
        using var owner = machine;
        EnterLongMode(v, Code32);
        Assert.Equal(ExitAction.Resume, MovToCr(v, 0, Pe | Et));
        Assert.False(Faulted(v));
        Assert.Equal(Lme, v.Vmcs.Read(VmcsField.GuestIa32Efer));
        Assert.Equal(0ul, v.Vmcs.Read(VmcsField.VmEntryControls) & (uint)VmEntryControls.Ia32eModeGuest);
    }

    [Theory]
    [InlineData(Code64, 0ul)]                  // hvm_set_cr0: "Guest attempt to clear CR0.PG in 64bit mode"
    [InlineData(Code32, Pcide)]                // hvm_set_cr0: "Guest attempts to clear CR0.PG while CR4.PCIDE=1"
    public void Paging_off_in_64_bit_mode_or_with_pcide_is_a_general_protection_fault(uint cs, ulong cr4)
    {
        var (machine, v) = Build();
        using var owner = machine;
        EnterLongMode(v, cs);
        v.Vmcs.Write(VmcsField.GuestCr4, v.Vmcs.Read(VmcsField.GuestCr4) | cr4);
        Assert.Equal(ExitAction.Resume, MovToCr(v, 0, Pe | Et));
        Assert.True(Faulted(v));
        Assert.Equal(Lme | Lma, v.Vmcs.Read(VmcsField.GuestIa32Efer));
        Assert.Equal(Pe | Et | Pg, GuestControlRegisters.Read(v.Vmcs, 0));
    }

    [Theory]
    [InlineData(0x1000ul, Pae | Pcide, false)]
    [InlineData(0x1001ul, Pae | Pcide, true)]  // hvm_set_cr4: PCIDE 0 -> 1 with CR3[11:0] != 0
    [InlineData(0x1000ul, 0ul, true)]          // hvm_set_cr4: "Guest cleared CR4.PAE while EFER.LMA is set"
    public void Cr4_in_ia32e_mode_follows_hvm_set_cr4(ulong cr3, ulong value, bool gp)
    {
        var (machine, v) = Build();
        using var owner = machine;
        EnterLongMode(v, Code64, cr3);
        Assert.Equal(ExitAction.Resume, MovToCr(v, 4, value));
        Assert.Equal(gp, Faulted(v));
        Assert.Equal(gp ? Pae : value, GuestControlRegisters.Read(v.Vmcs, 4));
        Assert.NotEqual(0ul, v.Vmcs.Read(VmcsField.GuestCr4) & Vmxe);
    }

    [Fact]
    public void Clearing_ne_is_taken_and_read_back_while_the_register_keeps_it()
    {
        // hvm_set_cr0 takes NE either way; VMX needs it set, so it stays in the register (vmx_update_guest_cr).
        var (machine, v) = Build();
        using var owner = machine;
        Assert.Equal(ExitAction.Resume, MovToCr(v, 0, Pe | Et | Ne | Cd | Nw));
        Assert.False(Faulted(v));
        Assert.Equal(Pe | Et | Ne | Cd | Nw, GuestControlRegisters.Read(v.Vmcs, 0));
        v.Vmcs.Write(VmcsField.GuestRip, Rip);
        Assert.Equal(ExitAction.Resume, MovToCr(v, 0, Pe | Et));
        Assert.False(Faulted(v));
        Assert.Equal(Pe | Et, GuestControlRegisters.Read(v.Vmcs, 0));
        Assert.Equal(Pe | Et | Ne, v.Vmcs.Read(VmcsField.GuestCr0));
    }

    [Fact]
    public void Lmsw_sets_pe_and_loads_mp_em_ts_through_the_cr0_checks()
    {
        // vmx_cr_access, LMSW: value = (CR0 & ~(MP|EM|TS)) | (source & (PE|MP|EM|TS)), then hvm_set_cr0.
        var (machine, v) = Build();
        using var owner = machine;
        var exit = VmExit.Exit(VmxExitReason.ControlRegisterAccess, (3ul << 4) | (0xEul << 16)) with { InstructionLength = 3 };
        Assert.Equal(ExitAction.Resume, ControlRegisterExit.Handle(v, in exit));
        Assert.False(Faulted(v));
        Assert.Equal(Pe | Et | 0xE, GuestControlRegisters.Read(v.Vmcs, 0));
    }

    [Fact]
    public void Mov_to_cr8_takes_the_low_four_bits_as_xen_does()
    {
        // hvm_mov_to_cr, case 8: TPR = (value & 0xf) << 4, no #GP for bits 63:4 (the CR8-load exit comes before the
        // processor's reserved-bit check, SDM Vol. 3C §26.1.1). Before, this hypervisor raised #GP.
        var (machine, v) = Build();
        using var owner = machine;
        Assert.Equal(ExitAction.Resume, MovToCr(v, 8, 0xFFFF_FFFF_FFFF_FF35));
        Assert.False(Faulted(v));
        Assert.Equal(5ul, Devices.VcpuApic.ReadCr8(v));
    }

    [Fact]
    public void A_guest_setting_cr4_vmxe_catches_the_general_protection_fault_and_carries_on()
    {
        // The guest toggles CR4.VMXE (host-owned, so the write exits) with MCE, then reads CR4 back: Xen raises #GP and
        // CR4 is unchanged. The guest's #GP handler counts in EBP and skips the 3-byte MOV.
        const uint load = 0x100000, results = load + 0x3000;
        var (machine, d) = GpCatchingGuest.Run(load, a =>
        {
            a.mov(eax, (uint)(Vmxe | Mce));
            a.mov(cr4, eax);
            a.mov(eax, cr4);
            a.mov(__dword_ptr[results], eax);
            a.mov(__dword_ptr[results + 4], ebp);
        });
        using var owner = machine;
        Assert.True(d.State == DomainState.Shutdown, d.CrashReport);
        Assert.Equal(0u, ThreadedSchedulerTests.ReadGuest(d, results));
        Assert.Equal(1u, ThreadedSchedulerTests.ReadGuest(d, results + 4));
    }
}
