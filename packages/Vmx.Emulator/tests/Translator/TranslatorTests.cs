using Iced.Intel;
using VmmKit.Vmx.Emulator.Engine;
using VmmKit.Vmx.Emulator.Testing;
using VmmKit.Vmx.Emulator.Tests.Engine;
using VmmKit.Vmx.Emulator.Translator;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.Vmx.Emulator.Tests.Translator;

/// <summary>
/// The translating tier against the interpreter: the same program from the same state must end in the same state
/// (registers, flags, RIP, instructions retired, memory), for whole runs and for runs cut by any budget.
/// </summary>
public sealed unsafe class TranslatorTests
{
    /// <summary>A loop over the translated subset: ALU, INC/DEC, shifts, IMUL, MOV/MOVZX/MOVSX/LEA, PUSH/POP, CALL/RET, Jcc.</summary>
    private static void HotLoop(Assembler a)
    {
        Label top = a.CreateLabel(), func = a.CreateLabel(), skip = a.CreateLabel(), done = a.CreateLabel();
        a.mov(ecx, 300);
        a.xor(eax, eax);
        a.mov(rbx, GuestRunner.DataAddress);
        a.Label(ref top);
        a.add(eax, ecx);
        a.imul(edx, eax, 7);
        a.shr(edx, 3);
        a.mov(__qword_ptr[rbx + rcx * 8], rdx);
        a.mov(rsi, __qword_ptr[rbx + rcx * 8]);
        a.sub(rsi, rdx);
        a.or(eax, esi);
        a.lea(rdi, __[rax + rcx * 2 + 5]);
        a.movzx(r8d, dil);
        a.movsx(r12, __word_ptr[rbx + rcx * 8]);
        a.push(r8);
        a.pop(r9);
        a.call(func);
        a.test(cl, 3);
        a.jnz(skip);
        a.inc(__dword_ptr[rbx]);
        a.sar(r10, cl);
        a.cmp(r10, r9);
        a.jl(skip);
        a.and(r11d, 0x7FF);
        a.Label(ref skip);
        a.mov(al, ah);
        a.xor(__byte_ptr[rbx + 1], al);
        a.dec(ecx);
        a.jnz(top);
        a.jmp(done);
        a.Label(ref func);
        a.xor(r10, r9);
        a.shl(r11, cl);
        a.imul(r13, r10);
        a.cmp(r10, r9);
        a.setl(r14b);
        a.cmovae(r15, r13);
        a.mul(ecx);
        a.test(eax, 0x100);
        a.cmovnz(r15d, __dword_ptr[rbx + 8]);
        a.sete(__byte_ptr[rbx + 3]);
        a.adc(r13, 1); // interpreted inside an otherwise translated block
        a.ret();
        a.Label(ref done);
    }

    /// <summary>On a host that is not x86-64 only the interpreter runs: checks that, and the caller stops there.</summary>
    private static bool HostCanTranslate()
    {
        if (BlockTranslator.HostSupported) return true;
        using var g = new GuestRunner();
        g.Machine.Core.SetTier(ExecutionTier.Translator);
        Assert.Null(g.Machine.Core.Translator);
        return false;
    }

    private static GuestRunner Runner(ExecutionTier tier)
    {
        var g = new GuestRunner();
        g.Machine.Core.SetTier(tier);
        if (g.Machine.Core.Translator is { } t) t.Threshold = 1;
        return g;
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

    [Fact]
    public void Hot_loop_ends_in_the_interpreters_state()
    {
        if (!HostCanTranslate()) return;
        using var reference = Runner(ExecutionTier.Interpreter);
        using var translated = Runner(ExecutionTier.Translator);
        var re = reference.Run(HotLoop);
        var ra = translated.Run(HotLoop);
        Assert.Equal(FlatStopReason.Halt, re.Reason);
        AssertSameState(reference, translated, re, ra);
        BlockTranslator t = translated.Machine.Core.Translator!;
        Assert.True(t.BlocksTranslated >= 4, $"{t.BlocksTranslated} blocks translated");
        // Most of the loop's instructions ran as host code.
        Assert.True(t.NativeInstructions > (long)ra.InstructionsExecuted / 2, $"{t.NativeInstructions} of {ra.InstructionsExecuted} translated");
    }

    [Fact]
    public void Hot_loop_in_lock_step_has_no_mismatch()
    {
        if (!HostCanTranslate()) return;
        using var reference = Runner(ExecutionTier.Interpreter);
        using var checkedRun = Runner(ExecutionTier.LockStep);
        var re = reference.Run(HotLoop);
        var ra = checkedRun.Run(HotLoop);
        BlockTranslator t = checkedRun.Machine.Core.Translator!;
        Assert.Null(t.FirstMismatch);
        Assert.True(t.LockStepChecks > 1000, $"{t.LockStepChecks} checks");
        AssertSameState(reference, checkedRun, re, ra);
    }

    [Fact]
    public void Every_budget_stops_at_the_same_instruction()
    {
        if (!HostCanTranslate()) return;
        for (ulong budget = 1; budget < 400; budget += 7)
        {
            using var reference = Runner(ExecutionTier.Interpreter);
            using var translated = Runner(ExecutionTier.Translator);
            var re = reference.Run(HotLoop, budget);
            var ra = translated.Run(HotLoop, budget);
            Assert.Equal(FlatStopReason.BudgetExhausted, re.Reason);
            AssertSameState(reference, translated, re, ra);
        }
    }

    [Fact]
    public void A_store_into_the_running_loop_is_seen_by_the_next_iteration()
    {
        if (!HostCanTranslate()) return;
        // The loop patches the immediate of its own first instruction (mov eax, imm32 at CodeAddress + 1).
        static void Patching(Assembler a)
        {
            Label top = a.CreateLabel();
            a.Label(ref top);
            a.mov(eax, 0x1111);
            a.add(ebx, eax);
            a.mov(rdx, GuestRunner.CodeAddress + 1);
            a.mov(__dword_ptr[rdx], ecx);
            a.dec(ecx);
            a.jnz(top);
        }
        using var reference = Runner(ExecutionTier.Interpreter);
        using var translated = Runner(ExecutionTier.LockStep);
        reference.S.Gpr[1] = translated.S.Gpr[1] = 50;
        var re = reference.Run(Patching);
        var ra = translated.Run(Patching);
        Assert.Equal(FlatStopReason.Halt, re.Reason);
        // 0x1111 on the first pass, then the counter stored by the previous pass: 0x1111 + 50 + 49 + ... + 2.
        Assert.Equal(0x1111UL + (50 * 51 / 2) - 1, reference.Reg(3));
        AssertSameState(reference, translated, re, ra);
        Assert.Null(translated.Machine.Core.Translator!.FirstMismatch);
    }

    /// <summary>The benchmark's tight loop: one block that branches to itself.</summary>
    private static void SelfLoop(Assembler a)
    {
        Label top = a.CreateLabel();
        a.mov(ecx, 20_000);
        a.mov(edx, 1);
        a.Label(ref top);
        a.add(eax, ecx);
        a.xor(edx, eax);
        a.shl(edx, 1);
        a.lea(eax, __dword_ptr[rax + rdx * 2 + 3]);
        a.dec(ecx);
        a.jnz(top);
    }

    [Fact]
    public void A_self_loop_goes_round_inside_the_translated_code_and_stops_exactly_at_the_budget()
    {
        if (!HostCanTranslate()) return;
        foreach (ulong budget in new ulong[] { 3, 4, 5, 9, 10, 11, 6 * 4096 + 3, 6 * 5000 + 1, 77_777, 10_000_000 })
        {
            using var reference = Runner(ExecutionTier.Interpreter);
            using var translated = Runner(ExecutionTier.Translator);
            var re = reference.Run(SelfLoop, budget);
            var ra = translated.Run(SelfLoop, budget);
            AssertSameState(reference, translated, re, ra);
            if (budget == 10_000_000)
            {
                Assert.Equal(FlatStopReason.Halt, ra.Reason);
                BlockTranslator t = translated.Machine.Core.Translator!;
                // 20,000 iterations in a handful of calls (each call retires at most MaxInstructionsPerCall instructions).
                Assert.True(t.NativeRuns < 20, $"{t.NativeRuns} calls into translated code");
            }
        }
    }

    /// <summary>The same kind of loop in 32-bit code (the workload guest's mode): segment bases and a 32-bit stack.</summary>
    private static void HotLoop32(Assembler a)
    {
        Label top = a.CreateLabel(), func = a.CreateLabel(), skip = a.CreateLabel(), done = a.CreateLabel();
        a.mov(ecx, 300);
        a.xor(eax, eax);
        a.mov(ebx, (uint)GuestRunner.DataAddress);
        a.Label(ref top);
        a.add(eax, ecx);
        a.imul(edx, eax, 7);
        a.shr(edx, 3);
        a.mov(__dword_ptr[ebx + ecx * 4], edx);
        a.mov(esi, __dword_ptr[ebx + ecx * 4]);
        a.sub(esi, edx);
        a.or(eax, esi);
        a.lea(edi, __[eax + ecx * 2 + 5]);
        a.movzx(ebp, __byte_ptr[ebx + ecx * 4 + 1]);
        a.push(ebp);
        a.pop(edi);
        a.push(0x1234);
        a.add(esp, 4);
        a.call(func);
        a.test(cl, 3);
        a.jnz(skip);
        a.inc(__dword_ptr[ebx]);
        a.sar(edi, cl);
        a.cmp(edi, ebp);
        a.jge(skip);
        a.and(ebp, 0x7FF);
        a.Label(ref skip);
        a.mov(al, ah);
        a.xor(__word_ptr[ebx + 2], ax);
        a.dec(ecx);
        a.jnz(top);
        a.jmp(done);
        a.Label(ref func);
        a.xor(edi, ebp);
        a.shl(ebp, cl);
        a.imul(ebp, edi);
        a.ret();
        a.Label(ref done);
    }

    /// <summary>A 32-bit interpreter runner and one on <paramref name="tier"/> translating from a block's first run.</summary>
    private static (GuestRunner Reference, GuestRunner Translated) Pair32(ExecutionTier tier)
    {
        var reference = new GuestRunner(bitness: 32);
        var translated = new GuestRunner(bitness: 32);
        reference.Machine.Core.SetTier(ExecutionTier.Interpreter);
        translated.Machine.Core.SetTier(tier);
        translated.Machine.Core.Translator!.Threshold = 1;
        return (reference, translated);
    }

    /// <summary>
    /// Runs a 32-bit <paramref name="program"/> to HLT in the interpreter and on <paramref name="tier"/> (translating at
    /// first sight): both end in the same state, lock-step finds no mismatch, and more than
    /// <paramref name="minTranslated"/> instructions ran translated. Returns the translator for further checks.
    /// </summary>
    private static BlockTranslator AssertRunsLikeInterpreter32(ExecutionTier tier, Action<Assembler> program, long minTranslated)
    {
        (GuestRunner reference, GuestRunner translated) = Pair32(tier);
        using var _ = reference;
        using var __ = translated;
        var re = reference.Run(program);
        var ra = translated.Run(program);
        Assert.Equal(FlatStopReason.Halt, re.Reason);
        AssertSameState(reference, translated, re, ra);
        BlockTranslator t = translated.Machine.Core.Translator!;
        Assert.Null(t.FirstMismatch);
        Assert.True(t.NativeInstructions > minTranslated, $"{t.NativeInstructions} of {ra.InstructionsExecuted} translated");
        return t;
    }

    [Fact]
    public void Thirty_two_bit_loop_ends_in_the_interpreters_state()
    {
        if (!HostCanTranslate()) return;
        foreach (ExecutionTier tier in new[] { ExecutionTier.Translator, ExecutionTier.LockStep })
        {
            using var probe = new GuestRunner(bitness: 32);
            long total = (long)probe.Run(HotLoop32).InstructionsExecuted;
            BlockTranslator t = AssertRunsLikeInterpreter32(tier, HotLoop32, total / 2);
            Assert.True(t.BlocksWithCachedRegisters > 0, "no block kept guest registers in host registers");
        }
    }

    /// <summary>
    /// 32-bit loop whose flag records only a TLB-miss exit can see (BlockCompiler.DeferredFlags.cs): ADD and CMP on
    /// registers, each followed by a load from a page the TLB has not seen yet, then an instruction writing every flag.
    /// </summary>
    private static void MissingLoads32(Assembler a)
    {
        Label top = a.CreateLabel();
        a.xor(ecx, ecx);
        a.mov(esi, (uint)GuestRunner.DataAddress);
        a.mov(edx, 40);
        a.mov(ebx, 0x40000000);
        a.Label(ref top);
        a.add(ecx, 0x3FFFFFFF);
        a.mov(eax, __dword_ptr[esi]);
        a.lea(esi, __[esi + 0x800]);
        a.cmp(ecx, ebx);
        a.movzx(edi, __byte_ptr[esi]);
        a.xor(edi, eax);
        a.sub(edx, 1);
        a.jnz(top);
    }

    [Fact]
    public void Flag_records_left_to_side_exits_are_rebuilt_at_every_tlb_miss()
    {
        if (!HostCanTranslate()) return;
        // Lock-step compares the state where the translated code left (the missing load, its flags those of the ADD or
        // CMP before it) with the interpreter's after as many instructions; the plain run must end as the interpreter.
        foreach (ExecutionTier tier in new[] { ExecutionTier.LockStep, ExecutionTier.Translator })
        {
            AssertRunsLikeInterpreter32(tier, MissingLoads32, 100);
        }
    }

    /// <summary>
    /// 32-bit code is compiled for flat ES/CS/SS/DS when the bases are 0 at translation (no base added per access);
    /// after DS and SS get a non-zero base, that code must not run (the same program then addresses other bytes), and
    /// code translated under those bases must add them. Both runs end as in the interpreter.
    /// </summary>
    [Fact]
    public void Code_compiled_for_flat_segments_does_not_run_under_a_segment_base()
    {
        if (!HostCanTranslate()) return;
        foreach (ExecutionTier tier in new[] { ExecutionTier.Translator, ExecutionTier.LockStep })
        {
            (GuestRunner reference, GuestRunner translated) = Pair32(tier);
            using var _ = reference;
            using var __ = translated;
            // Flat (translated flat), based (that code stays out), then everything dropped: based (translated with the
            // bases), flat again (the based code runs with bases of 0).
            foreach ((ulong dsBase, bool flush) in new[] { (0UL, false), (0x3000UL, false), (0x3000UL, true), (0UL, false) })
            {
                foreach (GuestRunner g in new[] { reference, translated })
                {
                    g.S.Ds.Base = dsBase;
                    g.S.Ss.Base = dsBase / 2;
                    g.Machine.Core.RefreshMode();
                }
                if (flush) translated.Machine.Core.FlushAll();
                BlockTranslator t = translated.Machine.Core.Translator!;
                long before = t.NativeInstructions;
                var re = reference.Run(HotLoop32);
                var ra = translated.Run(HotLoop32);
                Assert.Equal(FlatStopReason.Halt, re.Reason);
                AssertSameState(reference, translated, re, ra);
                Assert.Null(t.FirstMismatch);
                if (dsBase == 0 || flush) Assert.True(t.NativeInstructions - before > (long)ra.InstructionsExecuted / 2, $"base {dsBase:X}: little translated");
            }
        }
    }

    [Fact]
    public void Sixteen_bit_code_stays_interpreted()
    {
        using var g = new GuestRunner(bitness: 16);
        g.Machine.Core.SetTier(ExecutionTier.Translator);
        var r = g.Run(a =>
        {
            Label top = a.CreateLabel();
            a.mov(cx, 100);
            a.Label(ref top);
            a.add(ax, cx);
            a.dec(cx);
            a.jnz(top);
        });
        Assert.Equal(FlatStopReason.Halt, r.Reason);
        Assert.Equal(5050UL, g.Reg(0));
        Assert.Equal(0, g.Machine.Core.Translator?.BlocksTranslated ?? 0);
    }
}
