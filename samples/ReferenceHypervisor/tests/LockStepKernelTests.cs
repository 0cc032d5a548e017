using VmmKit.Boot;
using VmmKit.ReferenceHypervisor.Tests.SystemTest;
using VmmKit.Vmx.Emulator;
using Xunit.Abstractions;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// The translating tier over the whole test-kernel suite (samples/guests/systest; issue 17's gate): every kernel boots
/// on vmmkit-hv's machine in lock-step — each block translated at first sight and each translated run checked against
/// the interpreter from the same state — with zero mismatches, and ends exactly as under the interpreter alone
/// (transcript, exit status, instructions retired). QemuOracleTests ties the interpreter to QEMU TCG.
/// </summary>
public class LockStepKernelTests(ITestOutputHelper output)
{
    private const ulong InstructionBudget = 200_000_000;

    /// <summary>Every kernel, one test case each.</summary>
    public static TheoryData<string> Kernels() => QemuOracleTests.Kernels();

    [Theory]
    [MemberData(nameof(Kernels))]
    public void Kernel_runs_in_lock_step_without_a_mismatch(string kernel)
    {
        string path = SystemKernels.PathOf(kernel);
        var (transcript, exit, instructions, _, _, _, _) = Boot(path, ProcessorProviders.Create(ExecutionTier.Interpreter));
        var (lsTranscript, lsExit, lsInstructions, lsCrash, checks, translated, mismatch) =
            Boot(path, ProcessorProviders.Create(ExecutionTier.LockStep, translationThreshold: 1));

        output.WriteLine($"{kernel}: {lsInstructions} instructions, {checks} translated block runs checked, {translated} instructions run translated");
        Assert.Null(mismatch);
        Assert.Equal(transcript, lsTranscript);
        Assert.True(exit == lsExit, $"exit {lsExit} in lock-step, {exit} interpreted\n{lsCrash}");
        Assert.Equal(instructions, lsInstructions);
        if (EmulatedProcessor.TranslatorSupported)
            Assert.True(checks > 0, "no block ran translated");
    }

    /// <summary>
    /// The same kernels in the translating tier proper, where translated blocks chain to each other without returning to
    /// the dispatch loop (lock-step runs one block per call): the same transcript, exit status and instructions retired.
    /// </summary>
    [Theory]
    [MemberData(nameof(Kernels))]
    public void Kernel_runs_translated_and_chained_like_the_interpreter(string kernel)
    {
        string path = SystemKernels.PathOf(kernel);
        var (transcript, exit, instructions, _, _, _, _) = Boot(path, ProcessorProviders.Create(ExecutionTier.Interpreter));
        var (trTranscript, trExit, trInstructions, trCrash, _, translated, _) =
            Boot(path, ProcessorProviders.Create(ExecutionTier.Translator, translationThreshold: 1));

        output.WriteLine($"{kernel}: {trInstructions} instructions, {translated} run translated");
        Assert.Equal(transcript, trTranscript);
        Assert.True(exit == trExit, $"exit {trExit} translated, {exit} interpreted\n{trCrash}");
        Assert.Equal(instructions, trInstructions);
        if (EmulatedProcessor.TranslatorSupported)
            Assert.True(translated > 0, "no instruction ran translated");
    }

    /// <summary>Boots <paramref name="kernel"/>; the translator's counters are read before the machine (and its processors) is disposed.</summary>
    private static (string Transcript, int Exit, ulong Instructions, string? Crash, long Checks, long Translated, string? Mismatch) Boot(
        string kernel, ProcessorProviders.EmulatorProcessorProvider provider)
    {
        using var machine = new Machine((64UL + 16) << 20, provider) { MaxInstructionsPerVcpu = InstructionBudget };
        var config = new DomainConfig(Path.GetFileName(kernel), File.ReadAllBytes(kernel), 64UL << 20, "", []);
        Assert.True(machine.TryCreateDomain(config, out var domain, out string error), error);
        machine.Run();
        return (domain!.Console.Transcript, Cli.ExitCodes.For(domain), domain.Vcpus[0].InstructionsRetired, domain.CrashReport,
            provider.Processors.Sum(p => p.LockStepChecks), provider.Processors.Sum(p => p.TranslatedInstructions), provider.FirstMismatch());
    }
}
