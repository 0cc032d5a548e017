using Iced.Intel;
using VmmKit.Vmx.Emulator.Testing;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.Vmx.Emulator.Tests.Engine;

public class SmokeTests
{
    [Fact]
    public void Loop_sums_and_halts()
    {
        using var g = new GuestRunner();
        var r = g.Run(a =>
        {
            var top = a.CreateLabel();
            a.mov(ecx, 100);
            a.xor(eax, eax);
            a.Label(ref top);
            a.add(eax, ecx);
            a.dec(ecx);
            a.jnz(top);
        });
        Assert.Equal(FlatStopReason.Halt, r.Reason);
        Assert.Equal(5050UL, g.Reg(0));
        Assert.Equal(2UL + 300, r.InstructionsExecuted); // HLT exits, it does not retire
    }

    [Fact]
    public void Undefined_instruction_raises_UD()
    {
        using var g = new GuestRunner();
        var r = g.Run(a => a.ud2());
        Assert.Equal(FlatStopReason.Exception, r.Reason);
        Assert.Equal(6, r.Vector);
        Assert.Equal(GuestRunner.CodeAddress, g.S.Rip);
    }
}
