using System.Diagnostics;
using VmmKit.Boot;
using VmmKit.ReferenceHypervisor.Tests.SystemTest;
using VmmKit.Vmx.Emulator;
using Xunit.Abstractions;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// The integer benchmark guest (samples/guests/intbench, the one bench/ReferenceHypervisor.Benchmarks `compare` runs)
/// prints the same port-0xE9/console transcript under the interpreter, the translator, lock-step (zero mismatches) and
/// QEMU TCG, and the same lines as its native Linux build; the guest checks its own kernels' CRCs ("PASS").
/// </summary>
public class IntBenchTranscriptTests(ITestOutputHelper output)
{
    private const int Iterations = 3;

    [Fact]
    public async Task Transcript_is_the_same_under_every_tier_and_qemu_tcg()
    {
        string kernel = GuestBuild.Path("intbench.elf");
        string cmdline = $"iterations={Iterations}";
        var qemuTask = QemuTcg.RunAsync(kernel, TimeSpan.FromSeconds(120), append: cmdline);
        var interpreter = Boot(kernel, cmdline, ProcessorProviders.Create(ExecutionTier.Interpreter));
        var translator = Boot(kernel, cmdline, ProcessorProviders.Create(ExecutionTier.Translator, translationThreshold: 1));
        var lockStep = Boot(kernel, cmdline, ProcessorProviders.Create(ExecutionTier.LockStep, translationThreshold: 1));
        var qemu = await qemuTask;

        string native = Native(Iterations);
        Assert.EndsWith("intbench: PASS\n", native);
        Assert.False(qemu.TimedOut, $"intbench did not finish under QEMU:\n{qemu.Transcript}");
        Assert.Equal(native, qemu.Transcript);
        Assert.Equal(native, interpreter.Transcript);
        Assert.Equal(Cli.ExitCodes.Poweroff, interpreter.Exit);
        Assert.Equal(native, translator.Transcript);
        Assert.Equal(Cli.ExitCodes.Poweroff, translator.Exit);
        Assert.Equal(native, lockStep.Transcript);
        Assert.Null(lockStep.Mismatch);
        // Translation changes no architectural count: the same instructions retire under every tier.
        Assert.Equal(interpreter.Instructions, translator.Instructions);
        Assert.Equal(interpreter.Instructions, lockStep.Instructions);
        output.WriteLine($"intbench iterations={Iterations}: {interpreter.Instructions} instructions; translator ran {translator.Translated}, " +
            $"lock-step checked {lockStep.Checks} block runs");
        if (EmulatedProcessor.TranslatorSupported)
        {
            Assert.True(translator.Translated > (long)interpreter.Instructions / 2, $"{translator.Translated} of {interpreter.Instructions} translated");
            Assert.True(lockStep.Checks > 0, "no block ran translated in lock-step");
        }
    }

    private sealed record Outcome(string Transcript, int Exit, ulong Instructions, long Checks, long Translated, string? Mismatch);

    /// <summary>Boots <paramref name="kernel"/>; the translator's counters are read before the machine is disposed.</summary>
    private static Outcome Boot(string kernel, string cmdline, ProcessorProviders.EmulatorProcessorProvider provider)
    {
        using var machine = new Machine((64UL + 16) << 20, provider) { MaxInstructionsPerVcpu = 2_000_000_000 };
        var config = new DomainConfig(Path.GetFileName(kernel), File.ReadAllBytes(kernel), 64UL << 20, cmdline, []);
        Assert.True(machine.TryCreateDomain(config, out var domain, out string error), error);
        machine.Run();
        return new Outcome(domain!.Console.Transcript, Cli.ExitCodes.For(domain), domain.Vcpus[0].InstructionsRetired,
            provider.Processors.Sum(p => p.LockStepChecks), provider.Processors.Sum(p => p.TranslatedInstructions), provider.FirstMismatch());
    }

    /// <summary>The output of the benchmark's native Linux build (samples/guests/build/intbench-native).</summary>
    private static string Native(int iterations)
    {
        var psi = new ProcessStartInfo(GuestBuild.Path("intbench-native"), iterations.ToString()) { RedirectStandardOutput = true };
        using var p = Process.Start(psi)!;
        string text = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        Assert.Equal(0, p.ExitCode);
        return text;
    }
}
