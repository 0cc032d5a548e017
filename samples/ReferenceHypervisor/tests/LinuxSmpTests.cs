using System.Text.RegularExpressions;
using VmmKit.ReferenceHypervisor.Tests.SystemTest;
using Xunit.Abstractions;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// Debian's Linux 6.1 as a PVH guest with two vCPUs (<c>vmmkit-hv boot --vcpus 2</c>): the kernel counts both CPUs in
/// the MADT, brings CPU 1 up with INIT and start-up IPIs through its local APIC into the real-mode trampoline, gives
/// each CPU its own Xen timer (VIRQ_TIMER bound per vCPU, VCPUOP_set_singleshot_timer on each), its event-channel
/// IPIs and PV spinlock kicks (SCHEDOP_poll), runs busybox's /init, which prints /proc/interrupts, and powers off
/// after stopping CPU 1 with a fixed APIC IPI. Both vCPUs take turns on the one host thread of <c>Machine.Run</c>.
/// </summary>
public class LinuxSmpTests(ITestOutputHelper output)
{
    private const string Cmdline = "earlyprintk=xen console=hvc0 loglevel=8 cryptomgr.notests";

    /// <summary>What an SMP boot prints, in order, up to user space and the power-off.</summary>
    public static readonly (string Name, Regex Pattern)[] Milestones =
    [
        ("banner", new Regex(@"Linux version 6\.1\.")),
        ("two CPUs allowed", new Regex(@"smpboot: Allowing 2 CPUs, 0 hotplug CPUs")),
        ("paravirt banner", new Regex(@"Booting (paravirtualized )?kernel on Xen PVH")),
        ("Xen clock event device", new Regex(@"Xen: using vcpuop timer interface")),
        ("bringing up CPU 1", new Regex(@"smp: Bringing up secondary CPUs")),
        ("CPU 1's Xen timer", new Regex(@"installing Xen timer for CPU 1")),
        ("CPU 1's PV spinlock kick", new Regex(@"cpu 1 spinlock event irq \d+")),
        ("both CPUs up", new Regex(@"smp: Brought up 1 node, 2 CPUs")),
        ("both CPUs activated", new Regex(@"smpboot: Total of 2 processors activated")),
        ("Xen clock source", new Regex(@"clocksource: Switched to clocksource xen")),
        ("run /init", new Regex(@"Run /init as init process")),
        ("/init's marker", new Regex(Regex.Escape(BusyboxInitramfs.Marker))),
        ("/proc/interrupts", new Regex(@"^\s+CPU0\s+CPU1\s*$", RegexOptions.Multiline)),
        ("online CPUs", new Regex(@"online CPUs: 2")),
        ("power off", new Regex(@"reboot: (Power down|System halted)")),
    ];

    /// <summary>Messages that mean the SMP machinery went wrong somewhere (a hang detector, a lost CPU, a warning).</summary>
    private static readonly string[] Forbidden =
    [
        "do_boot_cpu failed", "CPU1: failed to boot", "failed to come online", "rcu_sched self-detected stall", "rcu: INFO:",
        "soft lockup", "hard LOCKUP", "WARNING:", "BUG:", "Oops", "calibrate_delay_direct() failed", "TSC synchronization",
        "timekeeping watchdog", "clocksource: Marking clocksource", "stopping other CPUs: failed",
    ];

    [Fact]
    public void Debian_vmlinux_with_two_vcpus_brings_up_both_cpus_and_both_count_timer_interrupts()
    {
        string cmdline = KnownDivergences.Contains("linux-init") ? Cmdline + " mitigations=off" : Cmdline;
        var r = HvRun.Boot(DebianLinux.VmlinuxPath, maxInstructions: 900_000_000, memoryMiB: 256, cmdline: cmdline,
            modules: [BusyboxInitramfs.InterruptsReaderPath], xenStore: false, vcpus: 2);
        output.WriteLine($"vmmkit-hv: exit status {r.ExitCode}, vCPU 0 ran {r.Instructions} instructions");
        output.WriteLine(r.Transcript);
        if (r.CrashReport is not null)
            output.WriteLine("hypervisor:\n" + r.CrashReport);

        int at = 0;
        foreach (var (name, pattern) in Milestones)
        {
            var m = pattern.Match(r.Transcript, at);
            Assert.True(m.Success, $"Linux stopped before '{name}' (exit {r.ExitCode}):\n{Tail(r.Transcript, 25)}\n{r.CrashReport}");
            at = m.Index + m.Length;
        }

        foreach (string bad in Forbidden)
            Assert.False(r.Transcript.Contains(bad, StringComparison.Ordinal), $"the kernel printed \"{bad}\"");
        foreach (string warning in LinuxBootTests.FixedWarnings)
            Assert.False(r.Transcript.Contains(warning, StringComparison.Ordinal), $"the kernel printed \"{warning}\" again");

        // Each CPU's own Xen timer interrupt (VIRQ_TIMER bound to its vCPU) counted on that CPU and only there.
        var (timer0Cpu0, timer0Cpu1) = Counts(r.Transcript, "timer0");
        var (timer1Cpu0, timer1Cpu1) = Counts(r.Transcript, "timer1");
        Assert.True(timer0Cpu0 > 0 && timer0Cpu1 == 0, $"timer0: {timer0Cpu0} {timer0Cpu1}");
        Assert.True(timer1Cpu1 > 0 && timer1Cpu0 == 0, $"timer1: {timer1Cpu0} {timer1Cpu1}");
        // Cross-CPU function calls went both ways through event-channel IPIs.
        var (cal0, cal1) = Counts(r.Transcript, "Function call interrupts");
        Assert.True(cal0 > 0 && cal1 > 0, $"CAL: {cal0} {cal1}");

        Assert.True(r.ExitCode == 0, $"exit status {r.ExitCode} (0 = poweroff):\n{Tail(r.Transcript, 20)}\n{r.CrashReport}");
    }

    /// <summary>The CPU0 and CPU1 columns of the /proc/interrupts line naming <paramref name="name"/>.</summary>
    private static (long Cpu0, long Cpu1) Counts(string transcript, string name)
    {
        var m = Regex.Match(transcript, @"^\s*\w+:\s+(\d+)\s+(\d+)\s+.*\b" + Regex.Escape(name) + @"\s*$", RegexOptions.Multiline);
        Assert.True(m.Success, $"no /proc/interrupts line for {name}");
        return (long.Parse(m.Groups[1].Value), long.Parse(m.Groups[2].Value));
    }

    private static string Tail(string text, int lines)
    {
        string[] all = text.Split('\n');
        return string.Join('\n', all.Skip(Math.Max(0, all.Length - lines)));
    }
}
