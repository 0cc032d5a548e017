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
        KillAndWait(dom0);   // SIGKILL: no chance to save anything more
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

    [Fact]
    public void A_guest_doing_disk_IO_keeps_working_across_a_SIGKILL_and_restart_of_Dom0()
    {
        using var host = XlTests.StartHostWithDom0();
        string image = Path.Combine(host.RunDirectory, "disk.img");
        using (var f = File.Create(image))
            f.SetLength(4 << 20);
        string cfg = XlTests.WriteConfig(host, "blk", "blkfront.elf", "disk = [ 'format=raw,vdev=xvda,access=rw,target=disk.img' ]\nextra = \"keep-going\"");
        var (code, _, stderr) = XlTests.Xl(host, null, "create", cfg);
        Assert.True(code == 0, $"{stderr}\n{host.Log}");
        XlTests.WaitForConsoleOrLog(host, "round 16 bad: 0\n");

        // SIGKILL in the middle of the guest's disk I/O: whatever the old blkback held goes with it.
        int dom0 = FindDom0(host.RunDirectory);
        KillAndWait(dom0);
        WaitFor(() => host.Log.Contains("Dom0 disconnected", StringComparison.Ordinal), host, $"killed vmmkit-dom0 {dom0}");
        int atKill = LastRound(host.Log);

        File.Delete(Path.Combine(host.RunDirectory, "dom0.sock"));
        using var second = Process.Start(new ProcessStartInfo(Path.Combine(AppContext.BaseDirectory, "vmmkit-dom0"), ["--rundir", host.RunDirectory]))!;
        try
        {
            WaitFor(() => File.Exists(Path.Combine(host.RunDirectory, "dom0.sock")), host);
            // The new Dom0's blkback took the connected ring over: rounds go on, each one's data read back intact.
            WaitFor(() => LastRound(host.Log) >= atKill + 24, host, $"the guest's disk I/O stopped at round {LastRound(host.Log)} (killed at {atKill})");
            Assert.DoesNotMatch(@"round \d+ bad: [1-9]", host.Log);
            // Its console backend too: what the guest prints now reaches xl console through the new Dom0.
            XlTests.WaitForConsole(host, "blk", $"blkfront: round {((LastRound(host.Log) / 8) + 1) * 8}\n");

            // "stop" at sector 64 of the image ends the rounds; the guest closes the device with the new backend.
            using (var f = new FileStream(image, FileMode.Open, FileAccess.Write, FileShare.ReadWrite))
            {
                f.Position = 64 * 512;
                f.Write("stop"u8);
            }

            XlTests.WaitForConsoleOrLog(host, "blkfront done\n");
            foreach (string line in (string[])["rounds bad: 0\n", "read past the end: -1\n", "backend Closing: 0\n", "backend Closed: 0\n"])
                Assert.True(host.Log.Contains(line, StringComparison.Ordinal), $"missing \"{line.TrimEnd()}\" in:\n{host.Log}");
            (code, _, stderr) = XlTests.Xl(host, null, "destroy", "blk");
            Assert.True(code == 0, stderr);
        }
        finally
        {
            second.Kill();
            second.WaitForExit();
        }

        byte[] disk = File.ReadAllBytes(image);
        for (int sector = 128; sector < 192; sector++)
        {
            for (int i = 0; i < 512; i++)
            {
                if (disk[(sector * 512) + i] != (byte)((sector * 31) + (i * 7) + 1))
                    Assert.Fail($"sector {sector} byte {i}: {disk[(sector * 512) + i]}");
            }
        }
    }

    private static int LastRound(string log)
    {
        var rounds = System.Text.RegularExpressions.Regex.Matches(log, @"round (\d+) bad:");
        return rounds.Count == 0 ? 0 : int.Parse(rounds[^1].Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
    }

    private static string List(HostProcess host)
    {
        var (code, stdout, stderr) = XlTests.Xl(host, null, "list");
        Assert.True(code == 0, stderr + host.Log);
        return stdout;
    }

    private static double CpuTime(string list) =>
        double.Parse(System.Text.RegularExpressions.Regex.Match(list, @"\nwork\s+1\s+.*?(\d+\.\d)\s*\n").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);

    internal static void WaitFor(Func<bool> condition, HostProcess host, string what = "")
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(60))
                throw new TimeoutException($"{what}\n{host.Log}");
            Thread.Sleep(50);
        }
    }

    /// <summary>
    /// SIGKILLs <paramref name="pid"/> and waits for it through one handle: once the process has died its parent may
    /// reap it at once, so a second lookup by id can find nothing and throw.
    /// </summary>
    internal static void KillAndWait(int pid)
    {
        using var process = Process.GetProcessById(pid);
        process.Kill();
        Assert.True(process.WaitForExit(10000), $"vmmkit-dom0 {pid} did not die within 10 s of SIGKILL");
    }

    /// <summary>The vmmkit-dom0 process the host started for <paramref name="rundir"/> (its argv names the run directory).</summary>
    internal static int FindDom0(string rundir)
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
