using VmmKit.Vmx.Emulator.Tests.Differential;
using VmmKit.Vmx.Emulator.Translator;
using Xunit.Abstractions;

namespace VmmKit.Vmx.Emulator.Tests.Translator;

/// <summary>
/// The random sequences of the differential tester (Differential/SequenceGenerator.cs) run in lock-step: every block
/// is translated at first sight and each translated run is checked against the interpreter, while the run as a whole
/// is still checked against the host CPU.
/// </summary>
public sealed class LockStepDifferentialTests
{
    private readonly ITestOutputHelper _output;

    public LockStepDifferentialTests(ITestOutputHelper output) => _output = output;

    [Fact]
    public void Integer_sequences_have_no_lock_step_mismatch() => Run(11_000_000, 50_000, InstructionMix.Integer);

    [Fact]
    public void Mixed_sequences_have_no_lock_step_mismatch() => Run(12_000_000, 20_000, InstructionMix.All | InstructionMix.Bits);

    private void Run(int firstSeed, int count, InstructionMix mix)
    {
        using var runner = new DifferentialRunner();
        var core = runner.Emulator.Machine.Core;
        core.SetTier(ExecutionTier.LockStep);
        BlockTranslator? t = core.Translator;
        if (!BlockTranslator.HostSupported)
        {
            Assert.Null(t);
            return;
        }
        Assert.NotNull(t);
        t.Threshold = 1;
        var (failures, report) = runner.RunMany(firstSeed, count, mix);
        _output.WriteLine($"{count} cases: {failures} host mismatches, {t.LockStepChecks} lock-step checks, {t.BlocksTranslated} blocks translated, {t.NativeInstructions} instructions translated");
        Assert.True(t.FirstMismatch == null, $"{t.LockStepMismatches} lock-step mismatches; first: {t.FirstMismatch}");
        Assert.True(failures == 0, $"{failures} of {count} cases differ from the host CPU; first ones:\n{report}");
        Assert.True(t.LockStepChecks > count / 2, $"only {t.LockStepChecks} lock-step checks");
    }
}
