using System.Diagnostics;
using System.Text.RegularExpressions;
using VmmKit.TestSupport;
using VmmKit.Vmx.Emulator.Benchmarks;

namespace VmmKit.Vmx.Emulator.Tests.Engine;

/// <summary>The gcc -O2 workload guest (samples/guests/workload) gives the same checksum in the emulator as natively.</summary>
public class WorkloadTests
{
    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "samples", "guests", "Makefile"))) return dir.FullName;
        }
        throw new InvalidOperationException("samples/guests/Makefile not found above " + AppContext.BaseDirectory);
    }

    private static string RunProcess(string file, string args)
    {
        var psi = new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd();
        string error = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"{file} {args} failed ({p.ExitCode}): {output}{error}");
        return output;
    }

    [Fact]
    public void Workload_checksum_matches_native()
    {
        string make = RequiredTool.Require("make", "make");
        RequiredTool.Require("gcc", "gcc");
        string root = RepositoryRoot();
        string guests = Path.Combine(root, "samples", "guests");
        RunProcess(make, $"-C \"{guests}\"");
        string native = RunProcess(Path.Combine(guests, "build", "workload-native"), "3");
        Match expected = Regex.Match(native, "workload checksum: (0x[0-9a-f]+)");
        Assert.True(expected.Success, native);

        using var w = new PvhWorkload(File.ReadAllBytes(Path.Combine(guests, "build", "workload.elf")), "iterations=3");
        w.Run();
        Assert.Contains("workload checksum: " + expected.Groups[1].Value, w.Output, StringComparison.Ordinal);
        Assert.Equal(0u, w.ExitCode);
        Assert.True(w.InstructionsRetired > 1_000_000);
    }
}
