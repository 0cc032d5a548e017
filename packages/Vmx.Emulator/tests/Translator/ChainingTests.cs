using Iced.Intel;
using VmmKit.Vmx.Emulator.Testing;
using VmmKit.Vmx.Emulator.Tests.Engine;
using VmmKit.Vmx.Emulator.Translator;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.Vmx.Emulator.Tests.Translator;

/// <summary>
/// Block chaining (src/Translator/ChainContext.cs): translated blocks jump to each other without returning to the
/// dispatch loop, through direct-branch slots and the indirect-branch cache; the state, instructions retired and the
/// stopping point stay the interpreter's, and a write to chained code cuts the chain.
/// </summary>
public sealed class ChainingTests
{
    /// <summary>
    /// A loop of several blocks, all translatable: a conditional branch both ways, a direct CALL, a RET, an indirect
    /// JMP through a register and a fall-through into the next block.
    /// </summary>
    private static void Blocks(Assembler a, int bits)
    {
        Label top = a.CreateLabel(), odd = a.CreateLabel(), join = a.CreateLabel(), func = a.CreateLabel(),
            via = a.CreateLabel(), done = a.CreateLabel();
        a.mov(ecx, 2_000);
        a.xor(eax, eax);
        a.mov(edx, 1);
        a.Label(ref top);
        a.add(eax, ecx);
        a.test(cl, 1);
        a.jnz(odd);
        a.xor(edx, eax);
        a.jmp(join);
        a.Label(ref odd);
        a.shl(edx, 1);
        a.sub(edx, eax);
        a.Label(ref join);
        a.call(func);
        if (bits == 64)
        {
            a.lea(rdi, __[via]); // an indirect jump (RET is the 32-bit indirect branch here)
            a.jmp(rdi);
        }
        else
        {
            a.jmp(via);
        }
        a.Label(ref via);
        if (bits == 64) a.lea(eax, __dword_ptr[rax + rdx * 2 + 3]);
        else a.lea(eax, __dword_ptr[eax + edx * 2 + 3]);
        a.dec(ecx);
        a.jnz(top);
        a.jmp(done);
        a.Label(ref func);
        a.imul(esi, edx, 5);
        a.add(eax, esi);
        a.ret();
        a.Label(ref done);
    }

    private static void AssertSameState(GuestRunner expected, GuestRunner actual, FlatRunResult re, FlatRunResult ra)
    {
        Assert.Equal(re.Reason, ra.Reason);
        Assert.Equal(re.InstructionsExecuted, ra.InstructionsExecuted);
        for (int r = 0; r < 16; r++) Assert.True(expected.Reg(r) == actual.Reg(r), $"GPR{r}: {expected.Reg(r):X} vs {actual.Reg(r):X}");
        Assert.Equal(expected.S.Rip, actual.S.Rip);
        Assert.Equal(expected.Flags, actual.Flags);
        Assert.Equal(expected.S.InstructionsRetired, actual.S.InstructionsRetired);
        Assert.True(expected.Machine.Memory.SequenceEqual(actual.Machine.Memory), "memory differs");
    }

    private static GuestRunner Runner(ExecutionTier tier, int bits)
    {
        var g = new GuestRunner(bitness: bits);
        g.Machine.Core.SetTier(tier);
        if (g.Machine.Core.Translator is { } t) t.Threshold = 1;
        return g;
    }

    [Theory]
    [InlineData(64)]
    [InlineData(32)]
    public void Chained_blocks_end_in_the_interpreters_state_in_few_calls(int bits)
    {
        if (!BlockTranslator.HostSupported) return;
        using var reference = Runner(ExecutionTier.Interpreter, bits);
        using var translated = Runner(ExecutionTier.Translator, bits);
        var re = reference.Run(a => Blocks(a, bits));
        var ra = translated.Run(a => Blocks(a, bits));
        Assert.Equal(FlatStopReason.Halt, re.Reason);
        AssertSameState(reference, translated, re, ra);
        BlockTranslator t = translated.Machine.Core.Translator!;
        Assert.True(t.NativeInstructions > (long)ra.InstructionsExecuted * 9 / 10, $"{t.NativeInstructions} of {ra.InstructionsExecuted} translated");
        // 2,000 rounds of at least 5 blocks each: without chaining that is over 10,000 calls into translated code.
        Assert.True(t.NativeRuns < 500, $"{t.NativeRuns} calls into translated code");
    }

    /// <summary>
    /// Large blocks run once (their translations fill a small arena, two chain slots each), then small blocks round a
    /// loop (translated after the arena filled, linked to each other, run many times); each small block adds its own
    /// constant, so a link to the wrong block changes EAX.
    /// </summary>
    private static void LargeThenSmallBlocks(Assembler a)
    {
        a.xor(eax, eax);
        a.mov(edx, 7);
        for (int b = 0; b < 12; b++)
        {
            Label next = a.CreateLabel();
            for (int i = 0; i < 40; i++)
            {
                a.add(eax, i + b);
                a.xor(edx, eax);
            }
            a.test(al, 1);
            a.jnz(next);
            a.Label(ref next);
        }
        Label top = a.CreateLabel();
        a.mov(ecx, 50);
        a.Label(ref top);
        for (int b = 0; b < 40; b++)
        {
            Label next = a.CreateLabel();
            a.add(eax, b * 3 + 1);
            a.test(al, 1);
            a.jnz(next);
            a.Label(ref next);
        }
        a.dec(ecx);
        a.jnz(top);
    }

    [Theory]
    [InlineData(64)]
    [InlineData(32)]
    public void A_full_arena_never_leaves_two_blocks_sharing_a_chain_slot(int bits)
    {
        if (!BlockTranslator.HostSupported) return;
        // Regression: when the code arena was full, the block being translated was placed after every translation was
        // dropped, with the chain slots it had been given before the drop; later blocks were given the same slots again,
        // so one block's link sent another block's exit to the wrong code. Arenas of a few pages fill over and over.
        using var reference = Runner(ExecutionTier.Interpreter, bits);
        var re = reference.Run(LargeThenSmallBlocks, 10_000_000);
        Assert.Equal(FlatStopReason.Halt, re.Reason);
        for (int pages = 2; pages <= 24; pages++)
        {
            using var translated = new GuestRunner(bitness: bits);
            translated.Machine.Core.SetTier(ExecutionTier.Translator, arenaBytes: pages * 4096);
            translated.Machine.Core.Translator!.Threshold = 1;
            var ra = translated.Run(LargeThenSmallBlocks, 10_000_000);
            AssertSameState(reference, translated, re, ra);
        }
    }

    [Fact]
    public void Every_budget_stops_at_the_same_instruction_when_chained()
    {
        if (!BlockTranslator.HostSupported) return;
        foreach (int bits in new[] { 64, 32 })
        {
            for (ulong budget = 1; budget < 3_000; budget += 97)
            {
                using var reference = Runner(ExecutionTier.Interpreter, bits);
                using var translated = Runner(ExecutionTier.Translator, bits);
                var re = reference.Run(a => Blocks(a, bits), budget);
                var ra = translated.Run(a => Blocks(a, bits), budget);
                Assert.Equal(FlatStopReason.BudgetExhausted, re.Reason);
                AssertSameState(reference, translated, re, ra);
            }
        }
    }

    [Fact]
    public void A_store_into_a_chained_block_is_seen_by_its_next_run()
    {
        if (!BlockTranslator.HostSupported) return;
        // Two blocks jumping to each other round a loop; in round 100, after both have been translated and linked,
        // the first patches the immediate of the second's first instruction (mov eax, imm32).
        static void Patching(Assembler a)
        {
            Label top = a.CreateLabel(), second = a.CreateLabel(), back = a.CreateLabel(), done = a.CreateLabel();
            a.mov(ecx, 200);
            a.Label(ref top);
            a.add(ebx, ecx);
            a.cmp(ecx, 100);
            a.jne(second);
            a.lea(rdx, __[second]);
            a.mov(__dword_ptr[rdx + 1], ecx);
            a.jmp(second);
            a.Label(ref back);
            a.dec(ecx);
            a.jnz(top);
            a.jmp(done);
            a.Label(ref second);
            a.mov(eax, 0x1111);
            a.add(ebx, eax);
            a.jmp(back);
            a.Label(ref done);
        }
        using var reference = Runner(ExecutionTier.Interpreter, 64);
        using var translated = Runner(ExecutionTier.Translator, 64);
        var re = reference.Run(Patching);
        var ra = translated.Run(Patching);
        Assert.Equal(FlatStopReason.Halt, re.Reason);
        // Rounds 200..101 add 0x1111, rounds 100..1 add 100.
        Assert.Equal((200UL * 201 / 2) + 100 * 0x1111UL + 100 * 100UL, reference.Reg(3));
        AssertSameState(reference, translated, re, ra);
    }
}
