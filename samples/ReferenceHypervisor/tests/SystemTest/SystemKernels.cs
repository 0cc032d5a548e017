using System.Diagnostics;
using VmmKit.TestSupport;

namespace VmmKit.ReferenceHypervisor.Tests.SystemTest;

/// <summary>
/// The system-level test kernels of samples/guests/systest (pm/*.c in 32-bit protected mode, lm/*.c in long mode),
/// built once per test run with make and gcc against Xen's headers.
/// </summary>
public static class SystemKernels
{
    private static readonly Lazy<string> BuildDir = new(Build, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The kernel sources' folder.</summary>
    public static string SourceDir { get; } = Path.Combine(GuestBuild.RepoRoot, "samples", "guests", "systest");

    /// <summary>Every kernel's name (the source file's name without .c), sorted.</summary>
    public static IReadOnlyList<string> Names { get; } =
        new[] { "pm", "lm" }
            .SelectMany(d => Directory.EnumerateFiles(Path.Combine(SourceDir, d), "*.c"))
            .Select(f => Path.GetFileNameWithoutExtension(f))
            .Order(StringComparer.Ordinal)
            .ToArray();

    /// <summary>Full path of a built kernel.</summary>
    public static string PathOf(string name) => Path.Combine(BuildDir.Value, name + ".elf");

    private static string Build()
    {
        RequiredTool.Require("gcc", "gcc");
        RequiredTool.Require("make", "make");
        RequiredTool.Require("ld", "binutils");
        RequiredTool.RequireFile("/usr/include/xen/elfnote.h", "libxen-dev");
        var psi = new ProcessStartInfo("make", $"-C \"{SourceDir}\" -j2") { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"make -C samples/guests/systest failed:\n{stdout}{stderr.Result}");
        return Path.Combine(GuestBuild.RepoRoot, "samples", "guests", "build", "systest");
    }
}
