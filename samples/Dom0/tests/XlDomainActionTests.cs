using System.Diagnostics;
using System.Text.RegularExpressions;
using VmmKit.ReferenceHypervisor.Tests;
using VmmKit.TestSupport;

namespace VmmKit.Dom0.Tests;

/// <summary>
/// xl.cfg(5)'s on_poweroff, on_reboot and on_crash (destroy, restart, preserve) applied by Dom0's toolstack when
/// VIRQ_DOM_EXC says a domain stopped, and <c>vmmkit-xl reboot</c>: through <c>control/shutdown</c> for a guest that
/// advertises PV control (libxl_domain_reboot), by SCHEDOP_remote_shutdown with SHUTDOWN_reboot for one that does not.
/// The guests are the C guests of samples/guests: hello powers off, misbehave crashes itself, workload runs long.
/// </summary>
public sealed class XlDomainActionTests
{
    private static string Config(HostProcess host, string name, string guest, string cmdline, string actions)
    {
        string cfg = Path.Combine(host.RunDirectory, name + ".cfg");
        File.WriteAllText(cfg, $"""
            name = "{name}"
            type = "pvh"
            kernel = "{GuestBuild.Path(guest)}"
            cmdline = "{cmdline}"
            memory = 16
            {actions}
            """);
        return cfg;
    }

    private static void Create(HostProcess host, string cfg)
    {
        var (code, _, stderr) = XlTests.Xl(host, null, "create", cfg);
        Assert.True(code == 0, $"{stderr}\n{host.Log}");
    }

    /// <summary>Waits until <c>xl list</c> satisfies <paramref name="done"/>; returns its output.</summary>
    private static string WaitForList(HostProcess host, Func<string, bool> done, string what)
    {
        var clock = Stopwatch.StartNew();
        string list = "";
        while (clock.Elapsed < TimeSpan.FromSeconds(90))
        {
            var (code, stdout, stderr) = XlTests.Xl(host, null, "list");
            Assert.True(code == 0, stderr);
            list = stdout;
            if (done(list))
                return list;
            Thread.Sleep(200);
        }

        throw new Xunit.Sdk.XunitException($"xl list never showed {what}:\n{list}\n{host.Log}");
    }

    private static void WaitForLog(HostProcess host, string text)
    {
        var clock = Stopwatch.StartNew();
        while (!host.Log.Contains(text, StringComparison.Ordinal))
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(90))
                throw new Xunit.Sdk.XunitException($"'{text}' never appeared on the host's log:\n{host.Log}");
            Thread.Sleep(100);
        }
    }

    [Fact]
    public void On_poweroff_destroy_removes_the_domain_and_preserve_keeps_it_shut_down()
    {
        using var host = XlTests.StartHostWithDom0();
        Create(host, Config(host, "gone", "hello.elf", "", "on_poweroff = \"destroy\""));
        WaitForLog(host, "Domain 1 has shut down, reason code 0 0x0");
        WaitForLog(host, "Action for shutdown reason code 0 is destroy");
        WaitForList(host, l => !l.Contains("gone", StringComparison.Ordinal), "'gone' destroyed");

        Create(host, Config(host, "kept", "hello.elf", "", "on_poweroff = \"preserve\""));
        WaitForLog(host, "Action for shutdown reason code 0 is preserve");
        WaitForList(host, l => Regex.IsMatch(l, @"(?m)^kept\s+2\s+\d+\s+\d+\s+---s--\s"), "'kept' shut down (---s--)");
        var (code, _, stderr) = XlTests.Xl(host, null, "destroy", "kept");
        Assert.True(code == 0, stderr);
        WaitForList(host, l => !l.Contains("kept", StringComparison.Ordinal), "'kept' destroyed");
    }

    [Fact]
    public void On_crash_preserve_keeps_the_crashed_domain_and_destroy_removes_it()
    {
        using var host = XlTests.StartHostWithDom0();
        Create(host, Config(host, "crashy", "misbehave.elf", "crash", "on_crash = \"preserve\""));
        WaitForLog(host, "Domain 1 has shut down, reason code 3 0x3");
        WaitForLog(host, "Action for shutdown reason code 3 is preserve");
        WaitForList(host, l => Regex.IsMatch(l, @"(?m)^crashy\s+1\s+\d+\s+\d+\s+----c-\s"), "'crashy' crashed (----c-)");

        Create(host, Config(host, "crashgone", "misbehave.elf", "crash", "on_crash = \"destroy\""));
        WaitForLog(host, "Action for shutdown reason code 3 is destroy");
        WaitForList(host, l => !l.Contains("crashgone", StringComparison.Ordinal), "'crashgone' destroyed");
    }

    [Fact]
    public void Xl_reboot_of_a_guest_without_pv_control_restarts_it_under_on_reboot_restart()
    {
        using var host = XlTests.StartHostWithDom0();
        Create(host, Config(host, "work", "workload.elf", "iterations=100000000", "on_reboot = \"restart\""));
        WaitForList(host, l => Regex.IsMatch(l, @"(?m)^work\s+1\s"), "'work' running");

        var (code, _, stderr) = XlTests.Xl(host, null, "reboot", "work");
        Assert.True(code == 0, stderr);
        WaitForLog(host, "Domain 1 has shut down, reason code 1 0x1");
        WaitForLog(host, "Action for shutdown reason code 1 is restart");
        WaitForLog(host, "Domain 1 restarted as work (id=2)");
        string list = WaitForList(host, l => Regex.IsMatch(l, @"(?m)^work\s+2\s+\d+\s+1\s+[-r][-b]----\s"), "'work' running again as domain 2");
        Assert.DoesNotMatch(@"(?m)^work\s+1\s", list);

        (code, _, stderr) = XlTests.Xl(host, null, "destroy", "work");
        Assert.True(code == 0, stderr);
        WaitForList(host, l => !l.Contains("work", StringComparison.Ordinal), "'work' destroyed");
    }

    [Fact]
    public void Xl_reboot_of_a_guest_with_pv_control_asks_it_through_control_shutdown()
    {
        string write = RequiredTool.Require("xenstore-write", "xenstore-utils");
        string read = RequiredTool.Require("xenstore-read", "xenstore-utils");
        using var host = XlTests.StartHostWithDom0();
        Create(host, Config(host, "pv", "workload.elf", "iterations=100000000", "on_reboot = \"destroy\""));
        // What Linux's xenbus writes when it watches control/shutdown (drivers/xen/manage.c); here written as Dom0.
        Assert.Equal("", XenStore(host, write, "/local/domain/1/control/feature-reboot", "1"));

        var (code, _, stderr) = XlTests.Xl(host, null, "reboot", "pv");
        Assert.True(code == 0, stderr);
        Assert.Equal("reboot\n", XenStore(host, read, "/local/domain/1/control/shutdown"));
        // The request is the guest's to act on: this one does not, so it keeps running.
        Thread.Sleep(500);
        WaitForList(host, l => Regex.IsMatch(l, @"(?m)^pv\s+1\s+\d+\s+1\s+[-r][-b]----\s"), "'pv' still running");
        Assert.DoesNotContain("Domain 1 has shut down", host.Log);
    }

    [Fact]
    public void Xl_create_c_starts_the_domain_and_attaches_its_console()
    {
        using var host = XlTests.StartHostWithDom0();
        // stdin ends at once: the console replays what the domain printed so far and leaves, with status 0.
        var (code, stdout, stderr) = XlTests.Xl(host, null, "create", "-c", Config(host, "pvio", "pvio.elf", "", "on_poweroff = \"preserve\""));
        Assert.True(code == 0, $"{stderr}\n{host.Log}");
        Assert.StartsWith("Started domain pvio (id=1)\n", stdout);
        XlTests.WaitForConsole(host, "pvio", "hello from the console ring");
        (code, _, stderr) = XlTests.Xl(host, null, "create", "-c", Path.Combine(host.RunDirectory, "missing.cfg"));
        Assert.Equal(1, code);
        Assert.Contains("missing.cfg", stderr);
    }

    [Fact]
    public void Xl_create_refuses_an_action_xl_cfg_does_not_offer_here()
    {
        using var host = XlTests.StartHostWithDom0();
        var (code, _, stderr) = XlTests.Xl(host, null, "create", Config(host, "bad", "hello.elf", "", "on_crash = \"coredump-destroy\""));
        Assert.Equal(1, code);
        Assert.Contains("on_crash = \"coredump-destroy\" is not supported: destroy, restart or preserve", stderr);
    }

    private static string XenStore(HostProcess host, string tool, params string[] args)
    {
        var psi = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args)
            psi.ArgumentList.Add(a);
        psi.Environment["XENSTORED_PATH"] = Path.Combine(host.RunDirectory, "xenstored.sock");
        using var p = Process.Start(psi)!;
        string stdout = p.StandardOutput.ReadToEnd();
        string stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"{tool} {string.Join(' ', args)}: {stderr}");
        return stdout;
    }
}
