using Iced.Intel;
using VmmKit.Vmx;
using VmmKit.Vmx.Emulator.Engine;
using VmmKit.Vmx.Emulator.Testing;
using static Iced.Intel.AssemblerRegisters;
using static VmmKit.Vmx.Emulator.Tests.SystemLevel.ControlRegisterTests;

namespace VmmKit.Vmx.Emulator.Tests.SystemLevel;

/// <summary>SWAPGS, RDTSCP, LTR/STR, LLDT/SLDT, MOV DR, WBINVD/INVD, PAUSE (SDM Vol. 2; VMX exits SDM Vol. 3C §26.1).</summary>
public unsafe class SystemRegisterTests
{
    private static FlatTestMachine Flat(int bitness, Action<Assembler> code)
    {
        var m = new FlatTestMachine(1 << 20, bitness);
        Assemble(bitness, code).CopyTo(m.Memory.Slice(0x1000));
        m.State.Rip = 0x1000;
        return m;
    }

    [Fact]
    public void Swapgs_exchanges_gs_base_with_kernel_gs_base()
    {
        using var m = Flat(64, a => { a.swapgs(); a.db(0x65, 0x48, 0x8B, 0x04, 0x25, 0x10, 0x00, 0x00, 0x00); /* mov rax, gs:[0x10] */ a.hlt(); });
        m.State.KernelGsBase = 0x2000;
        m.State.Gs.Base = 0x7777;
        BitConverter.GetBytes(0xABCDUL).CopyTo(m.Memory.Slice(0x2010));
        Assert.Equal(FlatStopReason.Halt, m.Run().Reason);
        Assert.Equal(0xABCDUL, m.State.Gpr[0]);
        Assert.Equal(0x7777UL, m.State.KernelGsBase);
    }

    [Fact]
    public void Swapgs_outside_64_bit_mode_is_ud()
    {
        using var m = Flat(32, a => { a.db(0x0F, 0x01, 0xF8); a.hlt(); });
        Assert.Equal(ExceptionVector.UD, m.Run().Vector);
    }

    [Fact]
    public void Rdtscp_returns_the_tsc_and_tsc_aux()
    {
        using var m = Flat(64, a => { a.nop(); a.nop(); a.rdtscp(); a.hlt(); });
        m.State.TscAux = 5;
        m.State.TscOffset = 1000;
        Assert.Equal(FlatStopReason.Halt, m.Run().Reason);
        Assert.Equal(1002UL, m.State.Gpr[0]);
        Assert.Equal(5UL, m.State.Gpr[1]);
    }

    [Fact]
    public void Ltr_marks_the_tss_busy_and_str_sldt_read_the_selectors()
    {
        using var m = Flat(64, a =>
        {
            a.mov(eax, 0x40); a.ltr(ax);
            a.str(ebx);
            a.xor(eax, eax); a.lldt(ax);
            a.sldt(ecx);
            a.ltr(ax); // null selector: #GP(0)
            a.hlt();
        });
        // GDT at 0x5000 with a 64-bit available TSS (16 bytes) at 0x40: base 0xFFFF_8000_0000_3000, limit 0x67.
        m.State.GdtrBase = 0x5000;
        m.State.GdtrLimit = 0x4F;
        ulong low = 0x67 | (0x3000UL << 16) | (0x89UL << 40);
        BitConverter.GetBytes(low).CopyTo(m.Memory.Slice(0x5040));
        BitConverter.GetBytes(0xFFFF_8000UL).CopyTo(m.Memory.Slice(0x5048));
        var r = m.Run();
        Assert.Equal(ExceptionVector.GP, r.Vector);
        Assert.Equal(0x40UL, m.State.Gpr[3]);
        Assert.Equal(0UL, m.State.Gpr[1]);
        Assert.Equal(0xFFFF_8000_0000_3000UL, m.State.Tr.Base);
        Assert.Equal(0x8Bu, m.State.Tr.AccessRights & 0xFF); // busy 64-bit TSS
        Assert.Equal(0x8B, m.Memory[0x5045]);
        Assert.Equal(1u << 16, m.State.Ldtr.AccessRights); // null LDT: unusable
    }

    [Fact]
    public void Ltr_of_a_busy_tss_is_gp_with_the_selector()
    {
        using var m = Flat(32, a => { a.mov(eax, 0x40); a.ltr(ax); a.hlt(); });
        m.State.GdtrBase = 0x5000;
        m.State.GdtrLimit = 0x47;
        BitConverter.GetBytes(0x67 | (0x8BUL << 40)).CopyTo(m.Memory.Slice(0x5040));
        var r = m.Run();
        Assert.Equal(ExceptionVector.GP, r.Vector);
        Assert.Equal(0x40u, r.ErrorCode);
    }

    [Fact]
    public void Debug_registers_keep_their_values_and_reserved_bits()
    {
        using var m = Flat(64, a =>
        {
            a.mov(rax, 0x1234); a.mov(dr0, rax); a.mov(rbx, dr0);
            a.xor(eax, eax); a.mov(dr6, rax); a.mov(rcx, dr6);
            a.mov(dr7, rax); a.mov(rdx, dr7);
            a.hlt();
        });
        Assert.Equal(FlatStopReason.Halt, m.Run().Reason);
        Assert.Equal(0x1234UL, m.State.Gpr[3]);
        Assert.Equal(0xFFFF_0FF0UL, m.State.Gpr[1]);   // bit 16 reads 1: no RTM in CPUID (SDM Vol. 3B §18.2.3; QEMU agrees)
        Assert.Equal(0x400UL, m.State.Gpr[2]);
    }

    [Fact]
    public void Mov_dr_exiting_wbinvd_exiting_invd_and_pause_exiting()
    {
        using var g = new VmcsGuest(32, a =>
        {
            a.mov(esi, dr7);   // exit: DR7, from DR, ESI
            a.wbinvd();        // exit 54
            a.invd();          // exit 13 (always)
            a.pause();         // exit 40
            a.hlt();
        });
        g.SetControl(VmcsField.PrimaryProcessorBasedVmExecutionControls,
            (ulong)(PrimaryProcessorBasedControls.MovDrExiting | PrimaryProcessorBasedControls.PauseExiting | PrimaryProcessorBasedControls.ActivateSecondaryControls));
        g.SetControl(VmcsField.SecondaryProcessorBasedVmExecutionControls, (ulong)SecondaryProcessorBasedControls.WbinvdExiting);
        VmExit e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.MovDr, e.Reason);
        Assert.Equal(7UL | (1UL << 4) | (6UL << 8), e.Qualification);
        uint[] reasons = [54, 13, 40, 12];
        foreach (uint reason in reasons)
        {
            g.Advance(e);
            e = g.Cpu.Run(g.Vmcs);
            Assert.Equal((VmxExitReason)reason, e.Reason);
        }
    }
}
