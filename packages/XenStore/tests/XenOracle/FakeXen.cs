using System.Diagnostics;
using VmmKit.TestSupport;

namespace VmmKit.XenStore.Tests.XenOracle;

/// <summary>
/// Builds the fake-Xen LD_PRELOAD shim (fakexen.c + fakexen.map beside the test assembly) with gcc,
/// once per test process, and finds Xen's own xenstored 4.17 from Debian's xen-utils-4.17.
/// </summary>
internal static class FakeXen
{
    private static readonly Lazy<string> Shim = new(Build, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The built shim (<c>fakexen.so</c>).</summary>
    public static string ShimPath => Shim.Value;

    private static string Build()
    {
        string gcc = RequiredTool.Require("gcc", "gcc");
        RequiredTool.RequireFile("/usr/include/xenctrl.h", "libxen-dev");
        string src = Path.Combine(AppContext.BaseDirectory, "XenOracle");
        string outDir = Path.Combine(Path.GetTempPath(), $"vmmkit-fakexen-{Environment.ProcessId}");
        Directory.CreateDirectory(outDir);
        string so = Path.Combine(outDir, "fakexen.so");
        var psi = new ProcessStartInfo(gcc) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in new[]
                 {
                     "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o", so, Path.Combine(src, "fakexen.c"),
                     "-Wl,--version-script=" + Path.Combine(src, "fakexen.map"), "-ldl",
                 })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEndAsync();
        if (!p.WaitForExit(60_000))
        {
            p.Kill();
            throw new TimeoutException("gcc did not finish building fakexen.so");
        }
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"gcc failed building fakexen.so: {err.Result}{output.Result}");
        return so;
    }

    /// <summary>
    /// Xen's C xenstored from Debian's xen-utils-4.17: installed under /usr/lib/xen-4.17/bin, under
    /// VMMKIT_XEN_UTILS_ROOT, or unpacked by ./test.sh into artifacts/debian/xen-utils above the test
    /// assembly. Missing = failure, never a skip.
    /// </summary>
    public static string Xenstored()
    {
        const string relative = "usr/lib/xen-4.17/bin/xenstored";
        var candidates = new List<string> { "/" + relative };
        if (Environment.GetEnvironmentVariable("VMMKIT_XEN_UTILS_ROOT") is { Length: > 0 } root)
            candidates.Add(Path.Combine(root, relative));
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            candidates.Add(Path.Combine(dir.FullName, "artifacts/debian/xen-utils", relative));
        foreach (var c in candidates)
        {
            if (File.Exists(c))
                return c;
        }
        throw new InvalidOperationException(
            "xenstored (Debian xen-utils-4.17) is missing; ./test.sh unpacks it into artifacts/debian/xen-utils.");
    }
}
