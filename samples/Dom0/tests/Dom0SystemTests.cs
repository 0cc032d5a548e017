using System.Diagnostics;
using VmmKit.TestSupport;

namespace VmmKit.Dom0.Tests;

/// <summary>
/// Slice steps 5 and 6: Debian's xenstore-utils list the tree Dom0's toolstack wrote, and a killed Dom0 leaves the
/// hypervisor and its guests running while a new Dom0 reattaches with xenstored's state.
/// </summary>
public sealed class Dom0SystemTests
{
    private static string XenstoreLs(HostProcess host, string path)
    {
        string tool = RequiredTool.Require("xenstore-ls", "xenstore-utils");
        var psi = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add("-f");
        psi.ArgumentList.Add(path);
        psi.Environment["XENSTORED_PATH"] = Path.Combine(host.RunDirectory, "xenstored.sock");
        using var p = Process.Start(psi)!;
        string stdout = p.StandardOutput.ReadToEnd();
        string stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"xenstore-ls {path}: {stderr}");
        return stdout;
    }

    [Fact]
    public void Debians_xenstore_ls_lists_the_domain_tree_the_toolstack_wrote()
    {
        using var host = XlTests.StartHostWithDom0();
        var (code, _, stderr) = XlTests.Xl(host, null, "create", XlTests.WriteConfig(host, "pvio", "pvio.elf"));
        Assert.True(code == 0, stderr);
        string tree = XenstoreLs(host, "/local/domain/1");
        Assert.Contains("/local/domain/1/name = \"pvio\"", tree);
        Assert.Contains("/local/domain/1/domid = \"1\"", tree);
        Assert.Contains("/local/domain/1/memory/target = \"16384\"", tree);
        Assert.Matches(@"/local/domain/1/console/port = ""\d+""", tree);
        Assert.Matches(@"/local/domain/1/store/ring-ref = ""\d+""", tree);
        Assert.Contains("/local/domain/1/console/type = \"xenconsoled\"", tree);
        Assert.Contains("/local/domain/0/name = \"Domain-0\"", XenstoreLs(host, "/local/domain/0"));
    }

    [Fact]
    public void Killing_Dom0_leaves_guests_running_and_a_new_Dom0_reattaches()
    {
        using var host = XlTests.StartHostWithDom0();
        string cfg = XlTests.WriteConfig(host, "work", "workload.elf", "extra = \"iterations=1000000\"");
        var (code, _, stderr) = XlTests.Xl(host, null, "create", cfg);
        Assert.True(code == 0, stderr);

        XlTests.WaitForConsoleOrLog(host, "workload iterations");
        int dom0 = FindDom0(host.RunDirectory);
        Process.GetProcessById(dom0).Kill();   // SIGKILL: no chance to save anything more
        Process.GetProcessById(dom0).WaitForExit(10000);
        WaitFor(() => host.Log.Contains("Dom0 disconnected", StringComparison.Ordinal), host, $"killed vmmkit-dom0 {dom0}");
        Assert.False(host.HasExited);

        File.Delete(Path.Combine(host.RunDirectory, "dom0.sock"));
        using var second = Process.Start(new ProcessStartInfo(Path.Combine(AppContext.BaseDirectory, "vmmkit-dom0"), ["--rundir", host.RunDirectory])
        {
            RedirectStandardError = true,
        })!;
        try
        {
            WaitFor(() => File.Exists(Path.Combine(host.RunDirectory, "dom0.sock")), host);
            string first = List(host);
            Assert.Matches(@"\nwork\s+1\s+", first);
            Thread.Sleep(1500);
            string later = List(host);
            Assert.True(CpuTime(later) > CpuTime(first), $"the guest did not run on:\n{first}\n{later}");
            // The new Dom0's xenstored has the old one's tree.
            Assert.Contains("/local/domain/1/name = \"work\"", XenstoreLs(host, "/local/domain/1"));
            (code, _, stderr) = XlTests.Xl(host, null, "destroy", "work");
            Assert.True(code == 0, stderr);
        }
        finally
        {
            second.Kill();
            second.WaitForExit();
        }
    }

    private static string List(HostProcess host)
    {
        var (code, stdout, stderr) = XlTests.Xl(host, null, "list");
        Assert.True(code == 0, stderr + host.Log);
        return stdout;
    }

    private static double CpuTime(string list) =>
        double.Parse(System.Text.RegularExpressions.Regex.Match(list, @"\nwork\s+1\s+.*?(\d+\.\d)\s*\n").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);

    private static void WaitFor(Func<bool> condition, HostProcess host, string what = "")
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(60))
                throw new TimeoutException($"{what}\n{host.Log}");
            Thread.Sleep(50);
        }
    }

    /// <summary>The vmmkit-dom0 process the host started for <paramref name="rundir"/> (its argv names the run directory).</summary>
    private static int FindDom0(string rundir)
    {
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid))
                continue;
            try
            {
                string[] argv = File.ReadAllText(Path.Combine(dir, "cmdline")).Split('\0');
                if (argv[0].EndsWith("vmmkit-dom0", StringComparison.Ordinal) && argv.Contains(rundir))
                    return pid;
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }

        throw new InvalidOperationException("vmmkit-dom0 is not running");
    }
}
