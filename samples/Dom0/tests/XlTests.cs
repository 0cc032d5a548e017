using System.Diagnostics;
using VmmKit.ReferenceHypervisor.Tests;

namespace VmmKit.Dom0.Tests;

/// <summary>
/// Slice step 4 end to end, all real processes: <c>vmmkit-hv host --dom0 vmmkit-dom0</c> brings the host up with one
/// command; <c>vmmkit-xl create</c> builds the pvio C guest from Dom0 (populate_physmap, foreign-mapped ELF/PVH load,
/// console and store rings, setvcpucontext, unpause); its PV console ring reaches <c>vmmkit-xl console</c>; <c>xl list</c>
/// shows it.
/// </summary>
public sealed class XlTests
{
    internal static HostProcess StartHostWithDom0()
    {
        var host = HostProcess.Start(memoryMiB: 256, dom0: Path.Combine(AppContext.BaseDirectory, "vmmkit-dom0"));
        var clock = Stopwatch.StartNew();
        while (!File.Exists(Path.Combine(host.RunDirectory, "dom0.sock")))
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(60))
                throw new InvalidOperationException($"vmmkit-dom0 did not come up:\n{host.Log}");
            Thread.Sleep(50);
        }

        return host;
    }

    internal static (int Code, string Stdout, string Stderr) Xl(HostProcess host, string? stdin, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "vmmkit-xl.dll"));
        psi.ArgumentList.Add("--rundir");
        psi.ArgumentList.Add(host.RunDirectory);
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (stdin is not null)
            p.StandardInput.Write(stdin);
        p.StandardInput.Close();
        if (!p.WaitForExit(TimeSpan.FromSeconds(120)))
        {
            p.Kill(true);
            throw new TimeoutException($"vmmkit-xl {string.Join(' ', args)} did not finish:\n{host.Log}");
        }

        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    internal static string WriteConfig(HostProcess host, string name, string guest, string extra = "")
    {
        string cfg = Path.Combine(host.RunDirectory, name + ".cfg");
        File.WriteAllText(cfg, $"""
            # an xl.cfg for a C guest of samples/guests
            name = "{name}"
            type = "pvh"
            kernel = "{GuestBuild.Path(guest)}"
            memory = 16
            vcpus = 1
            on_poweroff = "preserve"
            {extra}
            """);
        return cfg;
    }

    internal static string WaitForConsole(HostProcess host, string domain, string text)
    {
        var clock = Stopwatch.StartNew();
        string seen = "";
        while (clock.Elapsed < TimeSpan.FromSeconds(120))
        {
            // Ctrl-] right away: the console replays what the domain printed so far, then leaves.
            var (code, stdout, stderr) = Xl(host, "\u001d", "console", domain);
            Assert.True(code == 0, $"{stderr}\nhost:\n{host.Log}");
            seen = stdout;
            if (seen.Contains(text, StringComparison.Ordinal))
                return seen;
            Thread.Sleep(200);
        }

        throw new Xunit.Sdk.XunitException($"'{text}' never appeared on {domain}'s console; saw:\n{seen}\nhost:\n{host.Log}");
    }

    /// <summary>Waits until the hypervisor's log (the domains' console_io lines) shows <paramref name="text"/>.</summary>
    internal static void WaitForConsoleOrLog(HostProcess host, string text)
    {
        var clock = Stopwatch.StartNew();
        while (!host.Log.Contains(text, StringComparison.Ordinal))
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(60))
                throw new TimeoutException($"'{text}' never appeared:\n{host.Log}");
            Thread.Sleep(50);
        }
    }

    [Fact]
    public void Xl_create_builds_a_C_guest_whose_console_ring_reaches_xl_console_and_xl_list_shows_it()
    {
        using var host = StartHostWithDom0();
        string cfg = WriteConfig(host, "pvio", "pvio.elf");
        var (code, stdout, stderr) = Xl(host, null, "create", cfg);
        Assert.True(code == 0, $"{stderr}\n{host.Log}");
        Assert.Contains("Started domain pvio (id=1)", stdout);

        WaitForConsole(host, "pvio", "hello from the console ring");

        (code, stdout, stderr) = Xl(host, null, "list");
        Assert.True(code == 0, stderr);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Matches(@"^Name\s+ID\s+Mem\s+VCPUs\s+State\s+Time\(s\)$", lines[0]);
        Assert.Matches(@"^Domain-0\s+0\s+\d+\s+0\s+", lines[1]);
        Assert.Matches(@"^pvio\s+1\s+1[67]\s+1\s+[-r][-b]-[-s]--\s+\d+\.\d$", lines[2]);

        (code, _, stderr) = Xl(host, null, "destroy", "pvio");
        Assert.True(code == 0, stderr);
        (_, stdout, _) = Xl(host, null, "list");
        Assert.DoesNotContain("pvio", stdout);
        Assert.False(host.HasExited);
    }

    [Fact]
    public void Xl_reports_errors_the_way_xl_does()
    {
        using var host = StartHostWithDom0();
        var (code, _, stderr) = Xl(host, null, "destroy", "nosuch");
        Assert.Equal(1, code);
        Assert.Contains("no domain nosuch", stderr);
        string bad = Path.Combine(host.RunDirectory, "bad.cfg");
        File.WriteAllText(bad, "type = \"pv\"\nkernel = \"x\"\n");
        (code, _, stderr) = Xl(host, null, "create", bad);
        Assert.Equal(1, code);
        Assert.Contains("only type=\"pvh\"", stderr);
        (code, var stdout, _) = Xl(host, null, "info");
        Assert.Equal(0, code);
        Assert.Contains("xen_major              : 4", stdout);
    }
}
