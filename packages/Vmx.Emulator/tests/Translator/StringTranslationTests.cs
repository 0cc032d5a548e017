using Iced.Intel;
using VmmKit.Vmx.Emulator.Engine;
using VmmKit.Vmx.Emulator.Testing;
using VmmKit.Vmx.Emulator.Tests.Engine;
using VmmKit.Vmx.Emulator.Translator;
using static Iced.Intel.AssemblerRegisters;
using static VmmKit.Vmx.Emulator.Tests.SystemLevel.ControlRegisterTests;

namespace VmmKit.Vmx.Emulator.Tests.Translator;

/// <summary>
/// Translated MOVS/STOS (BlockCompiler.Strings.cs) against the interpreter (Handlers/Strings.cs): the same program from
/// the same state ends in the same registers, RIP, instructions retired and memory, for whole runs, for runs cut by any
/// budget (REP is interruptible between iterations, SDM Vol. 1 §7.3.9.2), across pages, overlapping operands, a page
/// fault in the middle of a string, and a string written over the running code.
/// </summary>
public sealed unsafe class StringTranslationTests
{
    private const ulong Data = GuestRunner.DataAddress;

    /// <summary>Every MOVS/STOS form the translator takes, and a few it leaves to the interpreter, in a hot loop.</summary>
    private static void Strings64(Assembler a)
    {
        Label top = a.CreateLabel();
        a.mov(r12d, 24);
        a.Label(ref top);
        a.mov(esi, (uint)Data + 0xF80);                 // both sides cross a page
        a.lea(rdi, __[r12 + (int)Data + 0x5F90]);
        a.imul(ecx, r12d, 37);
        a.add(ecx, 5);
        a.rep.movsb();
        a.mov(esi, (uint)Data + 0x9000);                // overlapping, destination one byte ahead: the first byte repeats
        a.lea(rdi, __[rsi + 1]);
        a.mov(ecx, 100);
        a.rep.movsb();
        a.mov(esi, (uint)Data + 0x2000);
        a.mov(edi, (uint)Data + 0xA008);
        a.mov(ecx, 600);
        a.rep.movsq();
        a.mov(eax, r12d);
        a.mov(edi, (uint)Data + 0xC002);                // an element across a page boundary
        a.mov(ecx, 1500);
        a.rep.stosd();
        a.mov(edi, (uint)Data + 0xE000);
        a.mov(ecx, 33);
        a.rep.stosw();
        a.mov(rax, 0x0123_4567_89AB_CDEFUL);
        a.rep.stosq();                                   // RCX = 0: nothing happens, one instruction retires
        a.stosb();
        a.movsw();
        a.mov(esi, (uint)Data + 0x100);
        a.mov(edi, (uint)Data + 0x3000);
        a.mov(ecx, 50);
        a.db(0x67, 0xF3, 0xA5);                          // REP MOVSD with 32-bit addresses
        a.mov(rdi, 0xFFFF_FFFF_0000_0000UL | (Data + 0x3400));
        a.mov(ecx, 9);
        a.db(0x67, 0xF3, 0xAA);                          // REP STOSB, 32-bit addresses: EDI (upper half ignored, then zeroed)
        a.std();
        a.mov(edi, (uint)Data + 0x3800);
        a.mov(ecx, 7);
        a.rep.stosb();                                   // DF = 1: interpreted
        a.cld();
        a.add(r13, __qword_ptr[Data + 0xA100]);
        a.dec(r12d);
        a.jnz(top);
    }

    /// <summary>Strings longer than the interpreter's 4,096 iterations per call.</summary>
    private static void LongStrings(Assembler a)
    {
        Label top = a.CreateLabel();
        a.mov(r12d, 3);
        a.Label(ref top);
        a.mov(eax, r12d);
        a.mov(edi, (uint)Data);
        a.mov(ecx, 10_000);
        a.rep.stosb();
        a.mov(esi, (uint)Data);
        a.mov(edi, (uint)Data + 0x4000);
        a.mov(ecx, 9_000);
        a.rep.movsq();
        a.dec(r12d);
        a.jnz(top);
    }

    private static GuestRunner Runner(ExecutionTier tier, int bitness = 64)
    {
        var g = new GuestRunner(bitness);
        g.Machine.Core.SetTier(tier);
        if (g.Machine.Core.Translator is { } t) t.Threshold = 1;
        return g;
    }

    private static void AssertSame(FlatTestMachine expected, FlatTestMachine actual, FlatRunResult re, FlatRunResult ra)
    {
        Assert.Equal(re.Reason, ra.Reason);
        Assert.Equal(re.Vector, ra.Vector);
        Assert.Equal(re.InstructionsExecuted, ra.InstructionsExecuted);
        for (int r = 0; r < 16; r++)
        {
            Assert.True(expected.State.Gpr[r] == actual.State.Gpr[r], $"GPR{r}: {expected.State.Gpr[r]:X} vs {actual.State.Gpr[r]:X}");
        }
        Assert.Equal(expected.State.Rip, actual.State.Rip);
        Assert.Equal(expected.State.GetRflags(), actual.State.GetRflags());
        Assert.Equal(expected.State.InstructionsRetired, actual.State.InstructionsRetired);
        Assert.True(expected.Memory.SequenceEqual(actual.Memory), "memory differs");
    }

    private static void Compare(Action<Assembler> program, ExecutionTier tier, ulong budget, int bitness = 64, long minNative = 0)
    {
        using var reference = Runner(ExecutionTier.Interpreter, bitness);
        using var translated = Runner(tier, bitness);
        var re = reference.Run(program, budget);
        var ra = translated.Run(program, budget);
        AssertSame(reference.Machine, translated.Machine, re, ra);
        BlockTranslator t = translated.Machine.Core.Translator!;
        Assert.Null(t.FirstMismatch);
        Assert.True(t.NativeInstructions >= minNative, $"{t.NativeInstructions} instructions translated, expected {minNative}");
    }

    [Fact]
    public void Movs_and_stos_end_in_the_interpreters_state()
    {
        if (!BlockTranslator.HostSupported) return;
        // Most of the iterations run as host code (the interpreter takes DF = 1, the page-crossing element and the first run).
        Compare(Strings64, ExecutionTier.Translator, 10_000_000, minNative: 20_000);
        Compare(LongStrings, ExecutionTier.Translator, 10_000_000, minNative: 2 * 19_000);
    }

    [Fact]
    public void Every_budget_stops_in_the_interpreters_state()
    {
        if (!BlockTranslator.HostSupported) return;
        for (ulong budget = 1; budget < 40_000; budget = budget * 5 / 4 + 3)
        {
            Compare(Strings64, ExecutionTier.Translator, budget);
        }
        foreach (ulong budget in new ulong[] { 4095, 4096, 4097, 4100, 10_004, 10_005, 10_006, 14_100, 30_011, 57_000 })
        {
            Compare(LongStrings, ExecutionTier.Translator, budget);
        }
    }

    [Fact]
    public void Lock_step_has_no_mismatch()
    {
        if (!BlockTranslator.HostSupported) return;
        Compare(Strings64, ExecutionTier.LockStep, 10_000_000);
        // Short strings fit the lock-step store log and are checked instruction by instruction.
        Compare(a =>
        {
            Label top = a.CreateLabel();
            a.mov(r12d, 200);
            a.Label(ref top);
            a.mov(esi, (uint)Data + 0xFFE);                // crosses a page byte by byte
            a.lea(rdi, __[r12 * 8 + (int)Data + 0x2000]);
            a.mov(ecx, 5);
            a.rep.movsb();
            a.mov(ecx, 3);
            a.rep.movsq();
            a.mov(eax, r12d);
            a.mov(ecx, 4);
            a.rep.stosd();
            a.stosw();
            // Lock-step translates a string only within the budget the replay is sure to have (the covered instructions
            // after it, less the earlier strings' extra iterations): these give the REP STOS room.
            for (int k = 0; k < 8; k++) a.add(r13, r12);
            a.dec(r12d);
            a.jnz(top);
        }, ExecutionTier.LockStep, 10_000_000, minNative: 199 * 20); // every instruction of the loop translated
    }

    [Fact]
    public void Thirty_two_bit_code_ends_in_the_interpreters_state()
    {
        if (!BlockTranslator.HostSupported) return;
        static void Program(Assembler a)
        {
            Label top = a.CreateLabel();
            a.mov(ebp, 30);
            a.Label(ref top);
            a.mov(esi, (uint)Data + 0xF00);
            a.lea(edi, __[ebp * 4 + (int)Data + 0x4F10]);
            a.lea(ecx, __[ebp * 8 + 100]);
            a.rep.movsd();
            a.mov(eax, ebp);
            a.mov(ecx, 777);
            a.rep.stosb();
            a.movsb();
            a.dec(ebp);
            a.jnz(top);
        }
        foreach (ulong budget in new ulong[] { 5, 77, 301, 2_000, 9_999, 10_000_000 })
        {
            Compare(Program, ExecutionTier.Translator, budget, bitness: 32);
        }
        Compare(Program, ExecutionTier.Translator, 10_000_000, bitness: 32, minNative: 29 * 777);
        Compare(Program, ExecutionTier.LockStep, 10_000_000, bitness: 32);
    }

    [Fact]
    public void A_string_written_over_the_running_code_is_seen_by_the_next_iteration()
    {
        if (!BlockTranslator.HostSupported) return;
        // REP STOSB fills the immediate of the loop's first instruction (mov eax, imm32 at CodeAddress + 1) with the counter.
        static void Patching(Assembler a)
        {
            Label top = a.CreateLabel();
            a.Label(ref top);
            a.mov(eax, 0x1111_1111);
            a.add(rbx, rax);
            a.mov(edi, (uint)GuestRunner.CodeAddress + 1);
            a.mov(eax, r8d);
            a.mov(ecx, 4);
            a.rep.stosb();
            a.dec(r8d);
            a.jnz(top);
        }
        foreach (ExecutionTier tier in new[] { ExecutionTier.Translator, ExecutionTier.LockStep })
        {
            using var reference = Runner(ExecutionTier.Interpreter);
            using var translated = Runner(tier);
            reference.S.Gpr[8] = translated.S.Gpr[8] = 40;
            var re = reference.Run(Patching);
            var ra = translated.Run(Patching);
            Assert.Equal(FlatStopReason.Halt, re.Reason);
            ulong expected = 0x1111_1111;
            for (uint k = 40; k >= 2; k--) expected += k * 0x0101_0101u;
            Assert.Equal(expected, reference.Reg(3));
            AssertSame(reference.Machine, translated.Machine, re, ra);
        }
    }

    /// <summary>64-bit paging, identity 4 KiB pages for the first MiB except 0x40000, which is not present.</summary>
    private static FlatTestMachine PagedMachine(ExecutionTier tier, Action<Assembler> code)
    {
        var m = new FlatTestMachine(1 << 20, 64);
        Span<byte> mem = m.Memory;
        const ulong pt = 0x13000;
        BitConverter.GetBytes(0x11000UL | 3).CopyTo(mem.Slice(0x10000));
        BitConverter.GetBytes(0x12000UL | 3).CopyTo(mem.Slice(0x11000));
        BitConverter.GetBytes(pt | 3).CopyTo(mem.Slice(0x12000));
        for (ulong p = 0; p < 256; p++) BitConverter.GetBytes(p == 0x40 ? 0 : (p << 12) | 3UL).CopyTo(mem.Slice((int)(pt + p * 8)));
        Assemble(64, code).CopyTo(mem.Slice(0x1000));
        m.State.Cr3 = 0x10000;
        m.State.Cr4 = ControlBits.Cr4Pae;
        m.State.Cr0 |= ControlBits.Cr0Pg | ControlBits.Cr0Wp;
        m.State.Rip = 0x1000;
        m.Core.RefreshMode();
        m.Core.FlushAll();
        m.Core.SetTier(tier);
        if (m.Core.Translator is { } t) t.Threshold = 1;
        return m;
    }

    [Fact]
    public void A_page_fault_in_the_middle_of_a_string_leaves_the_interpreters_registers()
    {
        if (!BlockTranslator.HostSupported) return;
        // Each run copies 0x80 bytes more towards the absent page at 0x40000; the 16th reaches it, part-way through.
        static void Program(Assembler a)
        {
            Label top = a.CreateLabel();
            a.mov(r12d, 1);
            a.Label(ref top);
            a.mov(esi, 0x3F800);
            a.mov(edi, 0x30000);
            a.imul(ecx, r12d, 0x80);
            a.add(ecx, 0x20);
            a.rep.movsb();
            a.mov(eax, r12d);
            a.mov(edi, 0x3E000);
            a.imul(ecx, r12d, 0x70);
            a.rep.stosw();
            a.inc(r12d);
            a.jmp(top);
        }
        foreach (ExecutionTier tier in new[] { ExecutionTier.Translator, ExecutionTier.LockStep })
        {
            using FlatTestMachine reference = PagedMachine(ExecutionTier.Interpreter, Program);
            using FlatTestMachine translated = PagedMachine(tier, Program);
            var re = reference.Run();
            var ra = translated.Run();
            Assert.Equal(FlatStopReason.Exception, re.Reason);
            Assert.Equal(14, re.Vector);
            Assert.NotEqual(0UL, reference.State.Gpr[1]); // stopped with iterations left
            AssertSame(reference, translated, re, ra);
            // Lock-step counts no iterations as translated (the interpreter's run is kept) and takes only short strings.
            long native = translated.Core.Translator!.NativeInstructions;
            Assert.True(native > (tier == ExecutionTier.LockStep ? 50 : 10_000), $"{native} translated");
        }
    }
}
