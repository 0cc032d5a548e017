using System.Text.RegularExpressions;
using VmmKit.Boot;
using VmmKit.ReferenceHypervisor.Tests.SystemTest;
using Xunit.Abstractions;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// Issue 16: Debian's Linux 6.1 boots once as a 1-vCPU PVH guest (XenStore, hvc0 and a disk read through xen-blkfront,
/// every message printed: <c>loglevel=8 ignore_loglevel</c>), and no warning-class line of its log, nor of the hypervisor's
/// log (hypercalls that returned -ENOSYS, MSR accesses that raised #GP), may appear unless it is in <see cref="Allowed"/>,
/// the same list as the table "Kernel log" of samples/ReferenceHypervisor/README.md, each with its reason.
/// </summary>
public class LinuxKernelLogTests(ITestOutputHelper output)
{
    private const string Cmdline = "earlyprintk=xen console=hvc0 loglevel=8 ignore_loglevel cryptomgr.notests";

    /// <summary>What counts as a warning, in the kernel's log or the hypervisor's.</summary>
    public static readonly (string Name, Regex Pattern)[] WarningPatterns =
    [
        ("unchecked MSR access", new Regex(@"unchecked MSR access")),
        ("kernel WARNING", new Regex(@"WARNING:")),
        ("call trace", new Regex(@"Call Trace")),
        ("kernel BUG", new Regex(@"\bBUG:|Oops|Kernel panic")),
        ("an -ENOSYS result in the kernel log", new Regex(@"(?<![\w.])-38\b|ENOSYS")),
        ("not supported", new Regex(@"not supported|unsupported")),
        ("clocksource or TSC unstable", new Regex(@"unstable|[Cc]locksource.*(skew|watchdog)")),
        ("firmware bug", new Regex(@"Firmware Bug|FIRMWARE BUG|BIOS Error|BIOS bug")),
        ("ACPI or APIC error", new Regex(@"\bA[CP]PI\b.*(\b[Ee]rror\b|\bWarning\b|\b[Ff]ailed\b|\bELCR\b)")),
        ("a Xen driver's complaint", new Regex(@"\b[Xx]en[\w:-]*:.*\b(fail\w*|error|unable|Unable|disabled|-\d+)\b")),
        ("speculation: vulnerable or unknown", new Regex(@"Vulnerable|Unknown: No mitigations|no microcode")),
        ("unable, failed, fatal, invalid", new Regex(@"\b(Unable|unable|Fatal|fatal|failed|Failed|Invalid)\b")),
        ("PAT or MTRRs off", new Regex(@"MTRRs disabled|PAT support disabled|PAT not supported")),
        ("a hang", new Regex(@"blocked for more than|soft lockup|self-detected stall|rcu_.*stall|hung_task")),
        ("hypervisor: hypercall -ENOSYS", new Regex(@"-> -ENOSYS")),
        ("hypervisor: #GP from an MSR", new Regex(@"MSR 0x[0-9a-f]+ .*-> #GP")),
        ("hypervisor: crash", new Regex(@"crash", RegexOptions.IgnoreCase)),
    ];

    /// <summary>
    /// The lines that stay, each with its reason: the table "Kernel log" of samples/ReferenceHypervisor/README.md, whose
    /// rows name the same texts (<see cref="Every_allowed_line_is_in_the_readme_table"/> checks it). A line is allowed when
    /// it contains the text.
    /// </summary>
    public static readonly (string Text, string Reason)[] Allowed =
    [
        ("HVMOP_pagetable_dying not supported", "as Xen with HAP: -EINVAL, the hint is for shadow paging"),
        ("ACPI: setting ELCR to 0001 (from ffff)", "as Xen PVH: no IO-APIC and no 8259 ELCR in a PVH domain"),
        ("xen: PV spinlocks disabled", "Linux's own with one vCPU"),
        ("Speculative Store Bypass: Vulnerable", "CPUID claims no speculation control and no immunity"),
        ("MDS: Vulnerable: Clear CPU buffers attempted, no microcode", "CPUID claims no MD_CLEAR and no ARCH_CAPABILITIES"),
        ("MMIO Stale Data: Unknown: No mitigations", "CPUID claims no ARCH_CAPABILITIES"),
        ("Performance Events: unsupported Netburst CPU model 6 no PMU driver", "no PMU, as Xen without vPMU"),
        ("PCI: Fatal: No config space access function found", "a PVH domain has no PCI"),
        ("intel_pstate: CPU model not supported", "no P-states, as Xen guests"),
        ("mce: Unable to init MCE device (rc: -5)", "CPUID has no MCE/MCA"),
        ("Invalid max_queues (4), will use default max: 1.", "Linux's own: one vCPU"),
        ("hypercall EventChannelOp (op 32, sub-op 11) -> -ENOSYS", "FIFO event channels not offered; Linux uses 2-level"),
        ("hypercall EventChannelOp (op 32, sub-op 13) -> -ENOSYS", "as Xen: set_priority is FIFO-only"),
        ("RDMSR 0xc0011029 -> #GP", "as Xen: AMD's DE_CFG on an Intel guest"),
    ];

    [Fact]
    public void Every_allowed_line_is_in_the_readme_table()
    {
        string readme = File.ReadAllText(Path.Combine(GuestBuild.RepoRoot, "samples", "ReferenceHypervisor", "README.md"));
        foreach (var (text, _) in Allowed)
            Assert.True(readme.Contains($"| `{text}` |", StringComparison.Ordinal), $"README.md's kernel-log table has no row for `{text}`");
    }

    [Fact]
    public void Debian_linux_boot_log_has_no_warning_the_hypervisor_caused()
    {
        string disk = Path.Combine(Path.GetTempPath(), $"vmmkit-linux-log-xvda-{Environment.ProcessId}.img");
        File.WriteAllBytes(disk, new byte[BusyboxInitramfs.DiskSectors * 512]);
        try
        {
            var (transcript, hypervisorLog, exitCode) = Boot(disk);
            output.WriteLine($"exit status {exitCode}; hypervisor log:\n{hypervisorLog}");
            // The boot must get as far as the other Linux tests': a short log has no warnings to find.
            Assert.Contains("Run /init as init process", transcript);
            Assert.Contains("blkfront: xvda", transcript);
            Assert.True(exitCode == 0, $"exit status {exitCode} (0 = poweroff):\n{hypervisorLog}");

            var unexplained = new List<string>();
            var used = new HashSet<string>();
            foreach (string line in (transcript + "\n" + hypervisorLog).Split('\n'))
            {
                foreach (var (name, pattern) in WarningPatterns)
                {
                    if (!pattern.IsMatch(line))
                        continue;
                    var allowed = Allowed.FirstOrDefault(a => line.Contains(a.Text, StringComparison.Ordinal));
                    if (allowed.Text is null)
                        unexplained.Add($"{name}: {line.TrimEnd()}");
                    else
                        used.Add(allowed.Text);
                    break;
                }
            }

            foreach (var (text, reason) in Allowed)
                output.WriteLine($"{(used.Contains(text) ? "seen    " : "not seen")}  {text}  ({reason})");
            Assert.True(unexplained.Count == 0,
                "warnings not in README.md's kernel-log table (fix the cause, or add a row with its reason):\n" + string.Join('\n', unexplained));
        }
        finally
        {
            File.Delete(disk);
        }
    }

    /// <summary>What <c>vmmkit-hv boot --disk</c> does, keeping the hypervisor's log (the CLI's stderr) as well as the console.</summary>
    private static (string Transcript, string HypervisorLog, int ExitCode) Boot(string disk)
    {
        var log = new System.Text.StringBuilder();
        const ulong memoryMiB = 256;
        using var machine = new Machine((memoryMiB + 16) << 20, ProcessorProviders.CreateDefault())
        {
            MaxInstructionsPerVcpu = 900_000_000,
            Logger = line => { lock (log) log.AppendLine(line); },
        };
        var modules = new List<PvhModule> { new(File.ReadAllBytes(BusyboxInitramfs.DiskReaderPath), "initramfs.cpio") };
        var config = new DomainConfig("vmlinux", File.ReadAllBytes(DebianLinux.VmlinuxPath), memoryMiB << 20, Cmdline, modules);
        Assert.True(machine.TryCreateDomain(config, out var domain, out string error), error);
        machine.Pv!.AddDisk(domain!, disk, "xvda");
        machine.Run();
        lock (log)
            return (domain!.Console.Transcript, log.ToString() + domain.CrashReport, Cli.ExitCodes.For(domain));
    }
}
