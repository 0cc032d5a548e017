using VmmKit.Vmx.Emulator.Testing;
using VmmKit.Vmx.Emulator.Tests.Differential;
using VmmKit.Vmx.Emulator.Translator;
using Xunit.Abstractions;

namespace VmmKit.Vmx.Emulator.Tests.Translator;

/// <summary>
/// The issue-17 gate: 10^6 random sequences of the differential tester (Differential/SequenceGenerator.cs) run in
/// lock-step — every block translated at first sight, each translated run checked against the interpreter from the
/// same state — with zero mismatches. The host CPU is not consulted here (LockStepDifferentialTests does that on a
/// smaller set); the interpreter is the oracle. Two classes of 500,000 seeds each, so xunit runs them on two cores.
/// </summary>
internal static class LockStepMillion
{
    /// <summary>Sequences per half of the gate.</summary>
    public const int PerHalf = 500_000;

    /// <summary>
    /// Runs seeds [<paramref name="firstSeed"/>, +<paramref name="count"/>): integer sequences, with every fourth one
    /// from the whole mix (SSE, bit manipulation) so blocks that end at an untranslated instruction are covered too.
    /// </summary>
    public static void Run(ITestOutputHelper output, int firstSeed, int count)
    {
        var arena = new TestArena();
        try
        {
            using var emulator = new EmulatorExecutor(arena.Base);
            var generator = new SequenceGenerator(arena.Base);
            var core = emulator.Machine.Core;
            core.SetTier(ExecutionTier.LockStep);
            BlockTranslator? t = core.Translator;
            if (!BlockTranslator.HostSupported)
            {
                Assert.Null(t);
                return;
            }
            Assert.NotNull(t);
            t.Threshold = 1;
            int halted = 0;
            for (int seed = firstSeed; seed < firstSeed + count; seed++)
            {
                InstructionMix mix = (seed & 3) == 3 ? InstructionMix.All | InstructionMix.Bits : InstructionMix.Integer;
                DifferentialCase c = generator.Generate(seed, mix);
                var state = c.Initial.Clone();
                FlatRunResult r = emulator.Run(c.Code, state);
                if (r.Reason == FlatStopReason.Halt) halted++;
                Assert.True(t.FirstMismatch == null, $"seed {seed}: {t.LockStepMismatches} lock-step mismatches; first: {t.FirstMismatch}\n{c.Describe("")}");
            }
            output.WriteLine($"{count} sequences ({halted} ran to their HLT): {t.LockStepChecks} lock-step checks, {t.BlocksTranslated} blocks translated, {t.NativeInstructions} instructions translated");
            Assert.Equal(count, halted);
            Assert.True(t.LockStepChecks > count / 2, $"only {t.LockStepChecks} lock-step checks");
        }
        finally
        {
            arena.Dispose();
        }
    }
}

/// <summary>Seeds 20,000,000 .. 20,499,999 of the million-sequence lock-step gate.</summary>
public sealed class LockStepMillionFirstHalfTests(ITestOutputHelper output)
{
    [Fact]
    public void Half_a_million_sequences_have_no_lock_step_mismatch() => LockStepMillion.Run(output, 20_000_000, LockStepMillion.PerHalf);
}

/// <summary>Seeds 20,500,000 .. 20,999,999 of the million-sequence lock-step gate.</summary>
public sealed class LockStepMillionSecondHalfTests(ITestOutputHelper output)
{
    [Fact]
    public void Half_a_million_sequences_have_no_lock_step_mismatch() => LockStepMillion.Run(output, 20_000_000 + LockStepMillion.PerHalf, LockStepMillion.PerHalf);
}
