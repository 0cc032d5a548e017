using Iced.Intel;
using VmmKit.Vmx.Emulator.Testing;
using VmmKit.Vmx.Emulator.Tests.Engine;
using VmmKit.Vmx.Emulator.Translator;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.Vmx.Emulator.Tests.Translator;

/// <summary>ADC/SBB in translated code: multi-word add and subtract chains (every operand size, register and memory forms).</summary>
public sealed class CarryChainTests
{
    private static void CarryLoop(Assembler a)
    {
        Label top = a.CreateLabel(), skip = a.CreateLabel();
        a.mov(ecx, 200);
        a.mov(rbx, GuestRunner.DataAddress);
        a.mov(rax, 0xFFFF_FFFF_FFFF_FF00UL);
        a.mov(rdx, 0x8000_0000_0000_0001UL);
        a.Label(ref top);
        a.add(rax, rcx);             // sets CF now and then
        a.adc(rdx, __qword_ptr[rbx]);
        a.adc(__qword_ptr[rbx + 8], rdx);
        a.sbb(esi, eax);
        a.sbb(__dword_ptr[rbx + 16], 0x7FFF_FFFF);
        a.adc(di, si);
        a.sbb(__word_ptr[rbx + 24], dx);
        a.adc(al, 0x81);
        a.sbb(__byte_ptr[rbx + 32], al);
        a.adc(r9, -5);
        a.jb(skip);                  // reads CF of the last ADC directly
        a.sbb(r10, r9);
        a.Label(ref skip);
        a.adc(r11, 0);
        a.dec(ecx);
        a.jnz(top);
    }

    [Fact]
    public void Carry_chains_end_in_the_interpreters_state_and_run_translated()
    {
        if (!BlockTranslator.HostSupported) return;
        foreach (ExecutionTier tier in new[] { ExecutionTier.Translator, ExecutionTier.LockStep })
        {
            using var reference = new GuestRunner();
            using var translated = new GuestRunner();
            reference.Machine.Core.SetTier(ExecutionTier.Interpreter);
            translated.Machine.Core.SetTier(tier);
            translated.Machine.Core.Translator!.Threshold = 1;
            FlatRunResult re = reference.Run(CarryLoop, 1_000_000);
            FlatRunResult ra = translated.Run(CarryLoop, 1_000_000);
            Assert.Equal(FlatStopReason.Halt, re.Reason);
            Assert.Equal(re.Reason, ra.Reason);
            Assert.Equal(re.InstructionsExecuted, ra.InstructionsExecuted);
            for (int r = 0; r < 16; r++) Assert.True(reference.Reg(r) == translated.Reg(r), $"{tier} GPR{r}: {reference.Reg(r):X} vs {translated.Reg(r):X}");
            Assert.Equal(reference.Flags, translated.Flags);
            Assert.True(reference.Machine.Memory.SequenceEqual(translated.Machine.Memory), "memory differs");
            BlockTranslator t = translated.Machine.Core.Translator!;
            Assert.Null(t.FirstMismatch);
            Assert.True(t.NativeInstructions > (long)ra.InstructionsExecuted / 2, $"{t.NativeInstructions} of {ra.InstructionsExecuted} translated");
        }
    }
}
