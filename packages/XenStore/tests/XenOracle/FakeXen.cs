using System.Diagnostics;
using VmmKit.TestSupport;

namespace VmmKit.XenStore.Tests.XenOracle;

/// <summary>
/// Builds the fake-Xen LD_PRELOAD shim (fakexen.c + fakexen.map copied beside the test assembly, under
/// XenOracle/) with gcc, once per test process, and finds Xen's own xenstored 4.17 from Debian's
/// xen-utils-4.17. samples/Dom0/tests compiles this file too.
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
    /// How to start <paramref name="binary"/> under the shim with all its state in <paramref name="directory"/>
    /// (the shim's files, <c>socket</c> through XENSTORED_PATH, <c>run/</c> through XENSTORED_RUNDIR), output
    /// redirected. The caller writes the shim's <c>domains</c> file.
    /// </summary>
    public static ProcessStartInfo StartInfo(string binary, string directory, IEnumerable<string> args)
    {
        Directory.CreateDirectory(Path.Combine(directory, "run"));
        var psi = new ProcessStartInfo(binary)
        {
            UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = directory,
        };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        psi.Environment["LD_PRELOAD"] = ShimPath;
        psi.Environment["FAKEXEN_DIR"] = directory;
        psi.Environment["XENSTORED_PATH"] = Path.Combine(directory, "socket");
        psi.Environment["XENSTORED_RUNDIR"] = Path.Combine(directory, "run");
        return psi;
    }

    /// <summary>Xen's C xenstored from Debian's xen-utils-4.17 (see <see cref="XenUtils"/>).</summary>
    public static string Xenstored() => XenUtils.Require("xenstored");
}
