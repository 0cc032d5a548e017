using System.Text.RegularExpressions;
using VmmKit.Boot;
using VmmKit.ReferenceHypervisor.Tests.SystemTest;
using Xunit.Abstractions;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// Debian's Linux 6.1 (linux-image-amd64, vmlinux extracted from the package by the test) as a Xen PVH guest.
/// Issue 11's goal: under vmmkit-hv its earlyprintk=xen output reaches the first place that needs event channels
/// (xen_smp_intr_init binding an IPI with EVTCHNOP_bind_ipi). Under QEMU TCG the same vmlinux (plain PVH, serial console)
/// is the reference that the image boots at all. While "linux-boot" is listed in KnownDivergences.txt the vmmkit-hv test
/// asserts it still stops short (and prints how far it got); removing the line makes it strict.
/// </summary>
public class LinuxBootTests(ITestOutputHelper output)
{
    private const string Cmdline = "earlyprintk=xen keep_bootcon console=hvc0 loglevel=8";

    /// <summary>What the boot must show, in order (start_kernel's banner, the PVH paravirt banner, Xen event-channel setup, then the IPI bind).</summary>
    public static readonly (string Name, Regex Pattern)[] Milestones =
    [
        ("banner", new Regex(@"Linux version 6\.1\.")),
        ("command line", new Regex(@"Command line: earlyprintk=xen")),
        ("paravirt banner", new Regex(@"Booting (paravirtualized )?kernel on Xen PVH")),   // 6.1 prints "Booting kernel on Xen PVH"
        ("event channel ABI", new Regex(@"xen:events: Using (2-level|FIFO-based) ABI")),
        // xen_smp_intr_init -> bind_ipi_to_irq: with EVTCHNOP_bind_ipi unimplemented the kernel BUG()s in events_base.c;
        // once event channels exist it goes on to bring up secondary CPUs.
        ("xen_smp_intr_init reached", new Regex(@"kernel BUG at drivers/xen/events/events_base\.c|smp: Bringing up secondary CPUs")),
    ];

    [Fact]
    public void Debian_vmlinux_is_a_pvh_kernel()
    {
        byte[] elf = File.ReadAllBytes(DebianLinux.VmlinuxPath);
        Assert.True(ElfImage.TryParse(elf, out var image, out string error), error);
        Assert.True(image!.Phys32Entry is not null, "vmlinux has no XEN_ELFNOTE_PHYS32_ENTRY note");
        output.WriteLine($"{DebianLinux.BzImage}: vmlinux {elf.Length} bytes, PHYS32 entry 0x{image.Phys32Entry.Value:x}");
    }

    [Fact]
    public async Task Debian_vmlinux_boots_under_qemu_tcg_as_plain_pvh()
    {
        string serial = Path.Combine(Path.GetTempPath(), $"vmmkit-linux-serial-{Environment.ProcessId}.txt");
        var r = await QemuTcg.RunAsync(DebianLinux.VmlinuxPath, TimeSpan.FromSeconds(180), "console=ttyS0 earlyprintk=serial panic=-1", memoryMiB: 256, serial: serial);
        string log = File.Exists(serial) ? File.ReadAllText(serial) : "";
        File.Delete(serial);
        output.WriteLine(Tail(log, 15));
        Assert.Matches(@"Linux version 6\.1\.", log);
        Assert.Contains("Command line: console=ttyS0", log);
        // No root file system is given: the kernel gets all the way to mounting one, then panics (panic=-1 reboots, -no-reboot exits).
        Assert.Contains("VFS: Unable to mount root fs", log);
        Assert.False(r.TimedOut, "QEMU did not finish within 180 s");
    }

    [Fact]
    public void Debian_vmlinux_under_vmmkit_hv_reaches_the_first_event_channel_call()
    {
        var r = HvRun.Boot(DebianLinux.VmlinuxPath, maxInstructions: 2_000_000_000, memoryMiB: 256, cmdline: Cmdline);
        int reached = 0;
        int at = 0;
        foreach (var (_, pattern) in Milestones)
        {
            var m = pattern.Match(r.Transcript, at);
            if (!m.Success)
                break;
            at = m.Index + m.Length;
            reached++;
        }

        output.WriteLine($"vmmkit-hv: exit status {r.ExitCode}, {r.Instructions} instructions, milestones reached {reached}/{Milestones.Length}" +
            (reached < Milestones.Length ? $" (next: {Milestones[reached].Name})" : ""));
        output.WriteLine("last transcript lines:\n" + Tail(r.Transcript, 20));
        if (r.CrashReport is not null)
            output.WriteLine("crash report:\n" + r.CrashReport);

        bool complete = reached == Milestones.Length;
        if (KnownDivergences.Contains("linux-boot"))
            Assert.False(complete, $"Linux now reaches xen_smp_intr_init under vmmkit-hv: remove linux-boot from {KnownDivergences.FilePath}");
        else if (!complete)
            Assert.Fail($"Linux stopped before '{Milestones[reached].Name}' (exit {r.ExitCode}):\n{Tail(r.Transcript, 20)}\n{r.CrashReport}");
    }

    private static string Tail(string text, int lines)
    {
        string[] all = text.Split('\n');
        return string.Join('\n', all.Skip(Math.Max(0, all.Length - lines)));
    }
}
