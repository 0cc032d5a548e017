using VmmKit.Vmx.Emulator.Testing;
using static Iced.Intel.AssemblerRegisters;
using static VmmKit.Vmx.Emulator.Tests.SystemLevel.ControlRegisterTests;

namespace VmmKit.Vmx.Emulator.Tests.SystemLevel;

/// <summary>
/// A long REP string instruction stops between iterations at the budget / preemption-timer boundary with RCX, RSI,
/// RDI updated, and each iteration counts as one retired instruction (issue 10 item 3; SDM Vol. 1 §7.3.9.2:
/// REP string instructions are interruptible between iterations).
/// </summary>
public unsafe class RepInterruptionTests
{
    [Fact]
    public void Rep_movsb_stops_at_the_budget_with_registers_updated_and_counts_iterations()
    {
        using var m = new FlatTestMachine(4 << 20, 64);
        Assemble(64, a => { a.mov(ecx, 1 << 20); a.mov(esi, 0x100000); a.mov(edi, 0x200000); a.rep.movsb(); a.hlt(); }).CopyTo(m.Memory.Slice(0x1000));
        m.State.Rip = 0x1000;
        var r = m.Run(budget: 503);
        Assert.Equal(FlatStopReason.BudgetExhausted, r.Reason);
        Assert.Equal(503UL, r.InstructionsExecuted);          // 3 movs + 500 iterations
        Assert.Equal((1UL << 20) - 500, m.State.Gpr[1]);
        Assert.Equal(0x100000UL + 500, m.State.Gpr[6]);
        Assert.Equal(0x200000UL + 500, m.State.Gpr[7]);
        ulong repIp = 0x1000 + 5 + 5 + 5;
        Assert.Equal(repIp, m.State.Rip);                      // at the REP instruction, to be resumed
        r = m.Run();
        Assert.Equal(FlatStopReason.Halt, r.Reason);
        Assert.Equal(0UL, m.State.Gpr[1]);
        Assert.Equal(3UL + (1UL << 20), m.State.InstructionsRetired); // every iteration counted once
    }
}
