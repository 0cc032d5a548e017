using VmmKit.ReferenceHypervisor.Tests.SystemTest;
using Xunit.Abstractions;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// The processor's system level against QEMU TCG: every test kernel of samples/guests/systest runs under both, and the
/// port-0xE9 transcripts must be identical. A kernel listed in KnownDivergences.txt must still differ (and the diff is
/// printed), so a fix in the emulator forces the list to shrink. samples/guests/systest/table.sh prints the whole table.
/// </summary>
public class QemuOracleTests(ITestOutputHelper output)
{
    /// <summary>Enough for every kernel (the largest runs a few million instructions); a kernel stuck in a loop stops here.</summary>
    private const ulong InstructionBudget = 200_000_000;

    /// <summary>Every kernel, one test case each.</summary>
    public static TheoryData<string> Kernels()
    {
        var data = new TheoryData<string>();
        foreach (string name in SystemKernels.Names)
            data.Add(name);
        return data;
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public async Task Kernel_transcript_matches_qemu_tcg(string kernel)
    {
        string path = SystemKernels.PathOf(kernel);
        var qemuTask = QemuTcg.RunAsync(path, TimeSpan.FromSeconds(60));
        var hv = HvRun.Boot(path, InstructionBudget);
        var qemu = await qemuTask;

        // The kernel itself is checked against the oracle first: it must run to its end under QEMU with every check passing.
        Assert.False(qemu.TimedOut, $"{kernel} did not finish under QEMU:\n{qemu.Transcript}");
        Assert.True(qemu.Transcript.EndsWith("done\n", StringComparison.Ordinal), $"{kernel} under QEMU did not reach its end:\n{qemu.Transcript}\n{qemu.Stderr}");
        Assert.DoesNotContain(": FAIL", qemu.Transcript);
        Assert.DoesNotContain("unexpected trap", qemu.Transcript);

        bool same = qemu.Transcript == hv.Transcript && hv.ExitCode == Cli.ExitCodes.Poweroff;
        string status = same ? "identical" : "diverges";
        output.WriteLine($"systest-table: {kernel,-14} {status,-10} vmmkit-hv exit {hv.ExitCode}, {hv.Instructions} instructions");
        if (!same)
        {
            output.WriteLine(KnownDivergences.Diff(qemu.Transcript, hv.Transcript));
            if (hv.CrashReport is not null)
                output.WriteLine(hv.CrashReport);
        }

        if (KnownDivergences.Contains(kernel))
            Assert.False(same, $"{kernel} now runs like QEMU: remove it from {KnownDivergences.FilePath}");
        else
        {
            Assert.True(same, $"{kernel} diverges from QEMU TCG (vmmkit-hv exit {hv.ExitCode}):\n" +
                KnownDivergences.Diff(qemu.Transcript, hv.Transcript) + (hv.CrashReport ?? ""));
        }
    }
}
