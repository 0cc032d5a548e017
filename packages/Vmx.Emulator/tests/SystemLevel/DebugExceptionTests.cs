using Iced.Intel;
using VmmKit.Vmx;
using VmmKit.Vmx.Emulator.Engine;
using VmmKit.Vmx.Emulator.Testing;
using static Iced.Intel.AssemblerRegisters;
using static VmmKit.Vmx.Emulator.Tests.SystemLevel.ControlRegisterTests;

namespace VmmKit.Vmx.Emulator.Tests.SystemLevel;

/// <summary>
/// Debug exceptions (SDM Vol. 3A chapter 18): instruction breakpoints (faults, RF), data breakpoints (traps after the
/// access, per REP iteration), I/O breakpoints with CR4.DE, single-step with DR6.BS and its MOV SS deferral.
/// </summary>
public unsafe class DebugExceptionTests
{
    private const ulong Dr6Fixed = 0xFFFF_0FF0;
    private const ulong Tf = 1UL << 8, Rf = 1UL << 16;

    private static FlatTestMachine Flat(int bitness, Action<Assembler> code)
    {
        var m = new FlatTestMachine(1 << 20, bitness);
        Assemble(bitness, code).CopyTo(m.Memory.Slice(0x1000));
        m.State.Rip = 0x1000;
        m.State.Gpr[4] = 0x80000;
        return m;
    }

    /// <summary>MOV DR<paramref name="n"/>, address; MOV DR7, control (5 + 3 + 5 + 3 = 16 bytes in 32-bit code).</summary>
    private static void Arm(Assembler a, int n, uint address, uint control)
    {
        a.mov(eax, address);
        a.mov(n switch { 0 => dr0, 1 => dr1, 2 => dr2, _ => dr3 }, eax);
        a.mov(eax, control);
        a.mov(dr7, eax);
    }

    [Fact]
    public void A_write_breakpoint_traps_after_the_store_only()
    {
        using var m = Flat(32, a =>
        {
            Arm(a, 0, 0x3000, 0x1 | (1u << 16) | (3u << 18)); // L0, RW0 = 01 (write), LEN0 = 11 (4 bytes)
            a.mov(ebx, __dword_ptr[0x3000]);                 // read: no #DB
            a.mov(__dword_ptr[0x3002], ecx);                 // write overlapping the watched dword
            a.nop();
            a.hlt();
        });
        var r = m.Run();
        Assert.Equal(ExceptionVector.DB, r.Vector);
        Assert.Equal(Dr6Fixed | 1, m.State.Dr6);
        Assert.Equal(0x90, m.Memory[(int)m.State.Rip]); // the trap points past the store, at the NOP
    }

    [Fact]
    public void A_read_write_breakpoint_covers_reads_and_ignores_accesses_next_to_it()
    {
        using var m = Flat(32, a =>
        {
            Arm(a, 2, 0x3002, 0x10 | (3u << 24));          // L2, RW2 = 11 (read/write), LEN2 = 00 (1 byte)
            a.mov(bl, __byte_ptr[0x3001]);                  // the byte before: nothing
            a.mov(ebx, __dword_ptr[0x3000]);                // covers 0x3002
            a.hlt();
        });
        var r = m.Run();
        Assert.Equal(ExceptionVector.DB, r.Vector);
        Assert.Equal(Dr6Fixed | 4, m.State.Dr6);
        Assert.Equal(0xF4, m.Memory[(int)m.State.Rip]);
    }

    [Fact]
    public void An_instruction_breakpoint_faults_before_the_instruction_and_rf_lets_it_run()
    {
        using var m = Flat(32, a =>
        {
            Arm(a, 1, 0x1000 + 16 + 1, 0x4);                // L1, RW1 = 00: the INC after the NOP
            a.nop();
            a.inc(esi);
            a.hlt();
        });
        var r = m.Run();
        Assert.Equal(ExceptionVector.DB, r.Vector);
        Assert.Equal(0x1011UL, m.State.Rip);
        Assert.Equal(0UL, m.State.Gpr[6]);
        Assert.Equal(Dr6Fixed | 2, m.State.Dr6);
        m.State.SetRflags(m.State.GetRflags() | Rf);         // what IRET from the #DB handler does
        Assert.Equal(FlatStopReason.Halt, m.Run().Reason);
        Assert.Equal(1UL, m.State.Gpr[6]);
        Assert.Equal(0UL, m.State.GetRflags() & Rf);         // cleared once the instruction completed
    }

    [Fact]
    public void Single_step_traps_after_each_instruction_with_bs()
    {
        using var m = Flat(32, a => { a.inc(eax); a.inc(eax); a.hlt(); });
        m.State.SetRflags(m.State.GetRflags() | Tf);
        var r = m.Run();
        Assert.Equal(ExceptionVector.DB, r.Vector);
        Assert.Equal(0x1001UL, m.State.Rip);
        Assert.Equal(1UL, m.State.Gpr[0]);
        Assert.Equal(Dr6Fixed | (1UL << 14), m.State.Dr6);
        Assert.Equal(ExceptionVector.DB, m.Run().Vector);
        Assert.Equal(0x1002UL, m.State.Rip);
    }

    [Fact]
    public void Mov_ss_holds_the_single_step_trap_until_after_the_next_instruction()
    {
        using var m = Flat(32, a => { a.mov(eax, 0x10); a.mov(ss, eax); a.inc(ecx); a.inc(ecx); a.hlt(); });
        BitConverter.GetBytes(0x00CF_9300_0000_FFFFUL).CopyTo(m.Memory.Slice(0x5010)); // GDT entry 0x10: flat data
        m.State.GdtrBase = 0x5000;
        m.State.GdtrLimit = 0x17;
        m.State.SetRflags(m.State.GetRflags() | Tf);
        Assert.Equal(ExceptionVector.DB, m.Run().Vector);    // after MOV EAX
        Assert.Equal(0x1005UL, m.State.Rip);
        Assert.Equal(ExceptionVector.DB, m.Run().Vector);    // not after MOV SS: after the INC behind it
        Assert.Equal(0x1008UL, m.State.Rip);
        Assert.Equal(1UL, m.State.Gpr[1]);
    }

    [Fact]
    public void A_rep_movsb_stops_after_the_iteration_that_hits_a_data_breakpoint()
    {
        using var m = Flat(32, a =>
        {
            Arm(a, 0, 0x3010, 0x1 | (1u << 16));            // write, 1 byte
            a.mov(esi, 0x2000); a.mov(edi, 0x3000); a.mov(ecx, 0x40);
            a.rep.movsb();
            a.hlt();
        });
        var r = m.Run();
        Assert.Equal(ExceptionVector.DB, r.Vector);
        Assert.Equal(0x40UL - 0x11, m.State.Gpr[1]);          // 0x11 iterations done (0x3000..0x3010)
        Assert.Equal(0x3011UL, m.State.Gpr[7]);
        Assert.Equal(0xF3, m.Memory[(int)m.State.Rip]);      // RIP still at the REP MOVSB: it resumes
        Assert.Equal(FlatStopReason.Halt, m.Run().Reason);
        Assert.Equal(0UL, m.State.Gpr[1]);
    }

    [Fact]
    public void An_io_breakpoint_on_an_exiting_out_is_kept_pending_and_delivered_on_resume()
    {
        using var m = Flat(32, a =>
        {
            a.mov(eax, 1u << 3); a.mov(cr4, eax);            // CR4.DE
            Arm(a, 3, 0x80, 0x40 | (2u << 28));             // L3, RW3 = 10 (I/O), LEN3 = 00
            a.@out(0x80, al);
            a.hlt();
        });
        var r = m.Run();
        Assert.Equal(FlatStopReason.Exit, r.Reason);
        Assert.Equal(8UL, m.Core.PendingDebugExceptions);
        m.State.Rip += 2;                                   // the host completes the OUT
        Assert.Equal(ExceptionVector.DB, m.Run().Vector);
        Assert.Equal(Dr6Fixed | 8, m.State.Dr6);
        Assert.Equal(0UL, m.Core.PendingDebugExceptions);
    }

    [Fact]
    public void Disarming_returns_to_whole_blocks()
    {
        using var m = Flat(32, a =>
        {
            Arm(a, 0, 0x3000, 0x1 | (1u << 16));
            a.xor(eax, eax); a.mov(dr7, eax);
            a.mov(__dword_ptr[0x3000], ecx);
            a.hlt();
        });
        Assert.Equal(FlatStopReason.Halt, m.Run().Reason);
        Assert.False(m.Core.DataBreakpointsArmed);
    }
}
