using Iced.Intel;
using VmmKit.Vmx.Emulator.Testing;
using VmmKit.Vmx.Emulator.Tests.Engine;
using VmmKit.Vmx.Emulator.Translator;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.Vmx.Emulator.Tests.Translator;

/// <summary>
/// DIV/IDIV in translated code: quotients and remainders as the interpreter computes them, and a #DE (zero divisor,
/// quotient overflow, MIN / -1) raised at the same instruction with the same state, never a host fault.
/// </summary>
public sealed class DivisionTests
{
    private static Action<Assembler> Loop(Action<Assembler> last) => a =>
    {
        Label top = a.CreateLabel();
        a.mov(ecx, 300);
        a.mov(rbx, GuestRunner.DataAddress);
        a.mov(r12, 0x1234_5678_9ABC_DEF0UL);
        a.Label(ref top);
        a.lea(r8, __[rcx + 7]);
        a.mov(rax, r12);
        a.xor(edx, edx);
        a.div(r8);                     // 64-bit unsigned
        a.lea(r9, __[rdx + 1]);
        a.mov(__qword_ptr[rbx], r9);    // remainder + 1: never 0
        a.mov(eax, ecx);
        a.imul(eax, eax, -977);
        a.cdq();
        a.idiv(r8d);                   // 32-bit signed, negative dividend
        a.add(r12, rax);
        a.mov(rax, r12);
        a.cqo();
        a.idiv(__qword_ptr[rbx]);      // 64-bit signed by a memory operand
        a.add(r13, rdx);
        a.mov(eax, 0xFFFF_FFF0);
        a.mov(edx, 5);
        a.div(r8d);                    // 32-bit unsigned with EDX != 0 (quotient still fits)
        a.xor(r14, rax);
        a.dec(ecx);
        a.jnz(top);
        last(a);
    };

    private static void Compare(Action<Assembler> program, FlatStopReason expected)
    {
        foreach (ExecutionTier tier in new[] { ExecutionTier.Translator, ExecutionTier.LockStep })
        {
            using var reference = new GuestRunner();
            using var translated = new GuestRunner();
            reference.Machine.Core.SetTier(ExecutionTier.Interpreter);
            translated.Machine.Core.SetTier(tier);
            translated.Machine.Core.Translator!.Threshold = 1;
            FlatRunResult re = reference.Run(program, 1_000_000);
            FlatRunResult ra = translated.Run(program, 1_000_000);
            Assert.Equal(expected, re.Reason);
            Assert.Equal(re.Reason, ra.Reason);
            Assert.Equal(re.Vector, ra.Vector);
            Assert.Equal(re.InstructionsExecuted, ra.InstructionsExecuted);
            Assert.Equal(reference.S.Rip, translated.S.Rip);
            for (int r = 0; r < 16; r++) Assert.True(reference.Reg(r) == translated.Reg(r), $"{tier} GPR{r}: {reference.Reg(r):X} vs {translated.Reg(r):X}");
            Assert.Equal(reference.Flags, translated.Flags);
            Assert.True(reference.Machine.Memory.SequenceEqual(translated.Machine.Memory), "memory differs");
            BlockTranslator t = translated.Machine.Core.Translator!;
            Assert.Null(t.FirstMismatch);
            Assert.True(t.NativeInstructions > (long)ra.InstructionsExecuted / 2, $"{t.NativeInstructions} of {ra.InstructionsExecuted} translated");
        }
    }

    [Fact]
    public void Divisions_end_in_the_interpreters_state()
    {
        if (!BlockTranslator.HostSupported) return;
        Compare(Loop(_ => { }), FlatStopReason.Halt);
    }

    [Fact]
    public void A_zero_divisor_raises_the_divide_error_at_the_same_instruction()
    {
        if (!BlockTranslator.HostSupported) return;
        Compare(Loop(a => { a.xor(r9d, r9d); a.mov(eax, 5); a.div(r9); }), FlatStopReason.Exception);
    }

    [Fact]
    public void A_quotient_overflow_raises_the_divide_error()
    {
        if (!BlockTranslator.HostSupported) return;
        Compare(Loop(a => { a.mov(eax, 0x10); a.mov(edx, 0x20); a.mov(r9d, 0x10); a.div(r9d); }), FlatStopReason.Exception);
        Compare(Loop(a => { a.mov(rax, 0x8000_0000_0000_0000UL); a.cqo(); a.mov(r9, -1L); a.idiv(r9); }), FlatStopReason.Exception);
    }
}
