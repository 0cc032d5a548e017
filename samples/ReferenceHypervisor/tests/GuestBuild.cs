using System.Diagnostics;
using VmmKit.TestSupport;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>Builds samples/guests once per test run (make + gcc + libxen-dev) and finds its outputs.</summary>
public static class GuestBuild
{
    private static readonly Lazy<string> BuildDir = new(Build, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The repository root (the folder holding Packages.sln).</summary>
    public static string RepoRoot { get; } = FindRepoRoot();

    /// <summary>Full path of a built guest, e.g. <c>Path("hello.elf")</c>.</summary>
    public static string Path(string name) => System.IO.Path.Combine(BuildDir.Value, name);

    private static string Build()
    {
        RequiredTool.Require("gcc", "gcc");
        RequiredTool.Require("make", "make");
        RequiredTool.Require("ld", "binutils");
        RequiredTool.RequireFile("/usr/include/xen/xen.h", "libxen-dev");
        string guests = System.IO.Path.Combine(RepoRoot, "samples", "guests");
        var psi = new ProcessStartInfo("make", $"-C \"{guests}\" -j2") { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"make -C samples/guests failed:\n{stdout}{stderr.Result}");
        return System.IO.Path.Combine(guests, "build");
    }

    private static string FindRepoRoot()
    {
        if (Environment.GetEnvironmentVariable("VMMKIT_REPO_ROOT") is { Length: > 0 } overridden)
            return overridden;
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            if (File.Exists(System.IO.Path.Combine(d.FullName, "Packages.sln")))
                return d.FullName;
        }

        throw new InvalidOperationException("cannot find the repository root (Packages.sln)");
    }
}
