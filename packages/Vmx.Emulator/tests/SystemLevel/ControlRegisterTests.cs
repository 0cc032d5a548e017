using Iced.Intel;
using VmmKit.Vmx;
using VmmKit.Vmx.Emulator.Engine;
using VmmKit.Vmx.Emulator.Testing;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.Vmx.Emulator.Tests.SystemLevel;

/// <summary>MOV CR, CLTS, LMSW, SMSW, EFER and the VMX non-root rules (SDM Vol. 3C §26.1.3, §26.3, table 27-3).</summary>
public unsafe class ControlRegisterTests
{
    /// <summary>The PVH start of a 64-bit kernel (Linux's pvh_start_xen): PAE, CR3, EFER.LME by WRMSR, CR0.PG, far jump to 64-bit code.</summary>
    private static void PvhToLongMode(Assembler a)
    {
        a.lgdt(__[0x6000]);
        a.mov(eax, cr4);
        a.or(eax, 0x20);
        a.mov(cr4, eax);
        a.mov(eax, 0x10000);
        a.mov(cr3, eax);
        a.mov(ecx, 0xC000_0080);
        a.rdmsr();
        a.or(eax, 0x100);
        a.wrmsr();
        a.mov(eax, cr0);
        a.or(eax, 0x8000_0001);
        a.mov(cr0, eax);
        a.db(0xEA, 0x00, 0x30, 0x00, 0x00, 0x08, 0x00); // jmp far 0x08:0x3000
    }

    [Fact]
    public void Pvh_guest_enters_long_mode_and_efer_lma_survives_exits()
    {
        using var g = new VmcsGuest(32, PvhToLongMode);
        g.WriteGdt();
        g.Assemble(64, 0x3000, a =>
        {
            a.mov(rax, 0x1_2345_6789UL);
            a.mov(rbx, cr0);
            a.hlt();
            a.mov(rcx, cr4); // after the HLT exit: still 64-bit
            a.hlt();
        });
        VmExit e = g.RunHandlingMsrs();
        Assert.Equal(VmxExitReason.Hlt, e.Reason);
        Assert.Equal(0x1_2345_6789UL, g.Cpu.Registers.Rax);
        Assert.Equal(0x8000_0011UL, g.Cpu.Registers.Rbx); // PG | ET | PE as the guest wrote it (NE is host-owned, shadow 0)
        Assert.Equal(0x500UL, g.Vmcs.Read(VmcsField.GuestIa32Efer) & 0x500); // LME | LMA saved on exit
        Assert.NotEqual(0UL, g.Vmcs.Read(VmcsField.VmEntryControls) & (ulong)VmEntryControls.Ia32eModeGuest);
        Assert.Equal(0x8000_0000UL, g.Vmcs.Read(VmcsField.GuestCr0) & 0x8000_0000);
        g.Advance(e);
        e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.Hlt, e.Reason);
        Assert.Equal(0x20UL, g.Cpu.Registers.Rcx); // PAE; VMXE is host-owned and reads as its shadow (0)
    }

    [Fact]
    public void Mov_to_cr0_exits_when_a_host_owned_bit_differs_from_the_shadow()
    {
        using var g = new VmcsGuest(32, a =>
        {
            a.mov(eax, cr0);          // reads the shadow in host-owned bits
            a.mov(edx, eax);
            a.or(edx, 1u << 5);       // NE: host-owned, shadow 0 -> exit
            a.mov(cr0, edx);
            a.hlt();
        });
        VmExit e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.ControlRegisterAccess, e.Reason);
        Assert.Equal(0UL | (0UL << 4) | (2UL << 8), e.Qualification); // CR0, MOV to CR, EDX
        Assert.Equal(3u, e.InstructionLength);
        Assert.Equal(0x1008UL, g.Vmcs.Read(VmcsField.GuestRip));
        Assert.Equal(0UL, g.Cpu.Registers.Rax & (1u << 5));
    }

    [Fact]
    public void Cr3_load_exiting_spares_cr3_target_values_and_store_exiting_reports_the_register()
    {
        using var g = new VmcsGuest(32, a =>
        {
            a.mov(eax, 0x20000);
            a.mov(cr3, eax);          // a target value: no exit
            a.mov(ecx, 0x30000);
            a.mov(cr3, ecx);          // exits: CR3, MOV to CR, ECX
            a.mov(ebx, cr3);          // store exiting: CR3, MOV from CR, EBX
            a.hlt();
        });
        g.SetControl(VmcsField.PrimaryProcessorBasedVmExecutionControls,
            (ulong)(PrimaryProcessorBasedControls.Cr3LoadExiting | PrimaryProcessorBasedControls.Cr3StoreExiting));
        g.Vmcs.Write(VmcsField.Cr3TargetCount, 1);
        g.Vmcs.Write(VmcsField.Cr3TargetValue0, 0x20000);
        VmExit e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.ControlRegisterAccess, e.Reason);
        Assert.Equal(3UL | (1UL << 8), e.Qualification);
        Assert.Equal(0x20000UL, g.Vmcs.Read(VmcsField.GuestCr3));
        g.Vmcs.Write(VmcsField.GuestCr3, 0x30000); // the hypervisor completes the MOV
        g.Advance(e);
        e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.ControlRegisterAccess, e.Reason);
        Assert.Equal(3UL | (1UL << 4) | (3UL << 8), e.Qualification);
        var q = new ControlRegisterAccessQualification(e.Qualification);
        Assert.Equal(ControlRegisterAccessType.MovFromCr, q.AccessType);
        Assert.Equal(3, q.GeneralPurposeRegister);
    }

    [Fact]
    public void Clts_lmsw_and_smsw_follow_the_cr0_mask_and_shadow()
    {
        using var g = new VmcsGuest(32, a =>
        {
            a.smsw(bx);               // shadowed view
            a.clts();                 // TS set in mask and shadow: exit
            a.mov(eax, 0xE);
            a.lmsw(ax);               // MP differs from the shadow under the mask: exit with source data
            a.hlt();
        });
        const ulong ts = 1 << 3, mp = 1 << 1;
        g.Vmcs.Write(VmcsField.Cr0GuestHostMask, g.Vmcs.Read(VmcsField.Cr0GuestHostMask) | ts | mp);
        g.Vmcs.Write(VmcsField.Cr0ReadShadow, g.Vmcs.Read(VmcsField.Cr0ReadShadow) | ts);
        VmExit e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.ControlRegisterAccess, e.Reason);
        Assert.Equal(2UL << 4, e.Qualification); // CLTS
        Assert.Equal(0x11UL | ts, g.Cpu.Registers.Rbx & 0xFFFF); // ET | PE | TS from the shadow
        g.Advance(e);
        e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.ControlRegisterAccess, e.Reason);
        Assert.Equal((3UL << 4) | (0xEUL << 16), e.Qualification); // LMSW, register operand, source 0x000E
    }

    [Fact]
    public void Lmsw_cannot_clear_pe_and_clts_clears_a_guest_owned_ts()
    {
        using var m = new FlatTestMachine(1 << 20, 32);
        var code = Assemble(32, a =>
        {
            a.mov(eax, cr0);
            a.or(eax, 8);
            a.mov(cr0, eax);
            a.mov(ebx, cr0);
            a.clts();
            a.mov(ecx, cr0);
            a.xor(edx, edx);
            a.lmsw(dx);               // PE stays 1
            a.mov(esi, cr0);
            a.hlt();
        });
        code.CopyTo(m.Memory.Slice(0x1000));
        m.State.Rip = 0x1000;
        Assert.Equal(FlatStopReason.Halt, m.Run().Reason);
        Assert.Equal(0x19UL, m.State.Gpr[3]);
        Assert.Equal(0x11UL, m.State.Gpr[1]);
        Assert.Equal(0x11UL, m.State.Gpr[6]);
    }

    [Theory]
    [InlineData(1u << 0)]          // VME: not implemented
    [InlineData(1u << 12)]         // LA57
    [InlineData(1u << 22)]         // PKE
    public void Mov_to_cr4_with_an_unimplemented_bit_is_gp0(uint bit)
    {
        var r = RunFlat(64, a => { a.mov(rax, cr4); a.or(rax, (int)bit); a.mov(cr4, rax); a.hlt(); });
        Assert.Equal(FlatStopReason.Exception, r.Reason);
        Assert.Equal(ExceptionVector.GP, r.Vector);
        Assert.Equal(0u, r.ErrorCode);
    }

    [Fact]
    public void Cr8_is_the_tpr_in_64_bit_mode_and_reserved_bits_fault()
    {
        using var m = new FlatTestMachine(1 << 20, 64);
        var code = Assemble(64, a => { a.mov(eax, 9); a.mov(cr8, rax); a.mov(rbx, cr8); a.mov(eax, 0x10); a.mov(cr8, rax); a.hlt(); });
        code.CopyTo(m.Memory.Slice(0x1000));
        m.State.Rip = 0x1000;
        var r = m.Run();
        Assert.Equal(9UL, m.State.Gpr[3]);
        Assert.Equal(FlatStopReason.Exception, r.Reason);
        Assert.Equal(ExceptionVector.GP, r.Vector);
    }

    [Fact]
    public void Mov_cr_at_cpl3_is_gp_and_cr1_is_ud()
    {
        using var m = new FlatTestMachine(1 << 20, 32);
        Assemble(32, a => { a.mov(eax, cr0); a.hlt(); }).CopyTo(m.Memory.Slice(0x1000));
        m.State.Rip = 0x1000;
        m.State.Ss.AccessRights |= 3 << 5;
        m.State.Cs.Selector |= 3;
        var r = m.Run();
        Assert.Equal(ExceptionVector.GP, r.Vector);

        using var m2 = new FlatTestMachine(1 << 20, 32);
        new byte[] { 0x0F, 0x20, 0xC8, 0xF4 }.CopyTo(m2.Memory.Slice(0x1000)); // mov eax, cr1
        m2.State.Rip = 0x1000;
        Assert.Equal(ExceptionVector.UD, m2.Run().Vector);
    }

    [Fact]
    public void Pg_with_lme_without_pae_is_gp_and_clearing_pg_in_64_bit_mode_is_gp()
    {
        using var m = new FlatTestMachine(1 << 20, 32);
        m.State.Efer = ControlBits.EferLme;
        Assemble(32, a => { a.mov(eax, cr0); a.or(eax, unchecked((int)0x8000_0000)); a.mov(cr0, eax); a.hlt(); }).CopyTo(m.Memory.Slice(0x1000));
        m.State.Rip = 0x1000;
        var r = m.Run();
        Assert.Equal(ExceptionVector.GP, r.Vector);
        Assert.Equal(0UL, m.State.Efer & ControlBits.EferLma);

        var r64 = RunFlat(64, a => { a.mov(rax, cr0); a.or(eax, 0x8000_0000u); a.mov(cr0, rax); a.hlt(); }, setPaging: true);
        Assert.Equal(FlatStopReason.Halt, r64.Reason); // PG 1 -> 1 is fine
        var off = RunFlat(64, a => { a.mov(rax, cr0); a.btr(rax, 31); a.mov(cr0, rax); a.hlt(); }, setPaging: true);
        Assert.Equal(ExceptionVector.GP, off.Vector);
    }

    [Fact]
    public void Guest_state_msrs_are_kept_by_the_processor_when_the_bitmap_lets_them_through()
    {
        using var m = new FlatTestMachine(1 << 20, 64);
        m.Core.MsrExitFilter = (_, _) => false;
        uint[] msrs = [0xC000_0081, 0xC000_0082, 0xC000_0083, 0xC000_0084, 0xC000_0100, 0xC000_0101, 0xC000_0102, 0xC000_0103, 0x174, 0x175, 0x176, 0x277];
        Assemble(64, a =>
        {
            for (int k = 0; k < msrs.Length; k++)
            {
                a.mov(ecx, msrs[k]);
                a.mov(eax, 0x1000 + k * 16);
                a.xor(edx, edx);
                a.wrmsr();
            }
            a.mov(ecx, 0xC000_0080);
            a.rdmsr();
            a.or(eax, 0x801);          // SCE | NXE
            a.wrmsr();
            a.mov(ecx, 0xC000_0082);
            a.rdmsr();
            a.mov(ebx, eax);
            a.hlt();
        }).CopyTo(m.Memory.Slice(0x1000));
        m.State.Rip = 0x1000;
        var r = m.Run();
        Assert.Equal(FlatStopReason.Exception, r.Reason); // the last, PAT = 0x10B0, has memory type 0xB0 in entry 0: #GP
        Assert.Equal(0x1010UL, m.State.Lstar);
        Assert.Equal(0x10A0UL, m.State.SysenterEip);
        Assert.Equal(0x1060UL, m.State.KernelGsBase);
    }

    [Fact]
    public void Efer_write_sets_sce_nxe_and_lme_cannot_change_while_paging()
    {
        using var m = new FlatTestMachine(1 << 20, 64);
        m.Core.MsrExitFilter = (_, _) => false;
        Assemble(64, a =>
        {
            a.mov(ecx, 0xC000_0080);
            a.rdmsr();
            a.or(eax, 0x801);
            a.wrmsr();
            a.rdmsr();
            a.mov(ebx, eax);
            a.and(eax, ~0x100);
            a.wrmsr();                // clearing LME with CR0.PG = 1: #GP
            a.hlt();
        }).CopyTo(m.Memory.Slice(0x1000));
        m.State.Cr0 |= ControlBits.Cr0Pg;
        m.State.Rip = 0x1000;
        WriteIdentityPaging(m);
        var r = m.Run();
        Assert.Equal(0xD01UL, m.State.Gpr[3]);
        Assert.Equal(ExceptionVector.GP, r.Vector);
    }

    // ---------------------------------------------------------------- helpers

    internal static byte[] Assemble(int bitness, Action<Assembler> code, ulong at = 0x1000)
    {
        var a = new Assembler(bitness);
        code(a);
        var s = new MemoryStream();
        a.Assemble(new StreamCodeWriter(s), at);
        return s.ToArray();
    }

    /// <summary>PML4 at 0x10000 identity-mapping the first 2 MiB (user, writable) for flat 64-bit runs with CR0.PG set.</summary>
    internal static void WriteIdentityPaging(FlatTestMachine m)
    {
        BitConverter.GetBytes(0x11000UL | 7).CopyTo(m.Memory.Slice(0x10000));
        BitConverter.GetBytes(0x12000UL | 7).CopyTo(m.Memory.Slice(0x11000));
        BitConverter.GetBytes(0x87UL).CopyTo(m.Memory.Slice(0x12000));
        m.State.Cr3 = 0x10000;
    }

    private static FlatRunResult RunFlat(int bitness, Action<Assembler> code, bool setPaging = false)
    {
        using var m = new FlatTestMachine(1 << 20, bitness);
        Assemble(bitness, code).CopyTo(m.Memory.Slice(0x1000));
        m.State.Rip = 0x1000;
        if (setPaging)
        {
            WriteIdentityPaging(m);
            m.State.Cr0 |= ControlBits.Cr0Pg;
            m.Core.FlushAll();
        }
        return m.Run();
    }
}
