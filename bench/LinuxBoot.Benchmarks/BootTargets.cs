using System.Diagnostics;

namespace VmmKit.LinuxBoot.Benchmarks;

/// <summary>
/// The boots compared in one run, each a function from the guest's kernel command line to the process that boots it:
/// vmmkit-hv's quick path (<c>vmmkit-hv boot</c>: no Dom0 process, its in-process xenstored and console backend, hvc0) in
/// each execution tier of the emulated processor, and QEMU TCG booting the same vmlinux and initramfs as plain PVH with a
/// serial console. A toolstack path (<c>vmmkit-xl create</c> with Dom0) is one more <see cref="Target"/> of the same shape.
/// </summary>
internal static class BootTargets
{
    /// <summary>How long one boot may take before it counts as not reaching its milestones.</summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromMinutes(5);

    /// <summary>Guest RAM for every boot, in MiB.</summary>
    public const int MemoryMiB = 256;

    /// <summary>
    /// The command line common to every boot (the console is added per target): no crypto self-tests, whose RSA part
    /// alone is 0.8 G instructions of software bignum arithmetic, as in LinuxBootTests.
    /// </summary>
    public const string CommonCmdline = "cryptomgr.notests";

    /// <summary>One boot: a name and the process that performs it.</summary>
    public sealed record Target(string Name, ProcessStartInfo Start);

    /// <summary>Every boot of the run, in order.</summary>
    public static IReadOnlyList<Target> All(string repo, BootImages images)
    {
        var (hv, kind) = VmmkitHv(repo);
        return
        [
            new($"vmmkit-hv boot ({kind}, interpreter)", HvBoot(hv, images, $"console=hvc0 {CommonCmdline}", "Interpreter")),
            new($"vmmkit-hv boot ({kind}, translator)", HvBoot(hv, images, $"console=hvc0 {CommonCmdline}", "Translator")),
            new("qemu-system-x86_64 -accel tcg (PVH, ttyS0)", QemuBoot(images, $"console=ttyS0 {CommonCmdline}")),
        ];
    }

    /// <summary>vmmkit-hv's quick path: one guest, XenStore and the PV console ring served in-process.</summary>
    public static ProcessStartInfo HvBoot(ProcessStartInfo hv, BootImages images, string cmdline, string tier)
    {
        var psi = new ProcessStartInfo(hv.FileName);
        foreach (string a in hv.ArgumentList)
            psi.ArgumentList.Add(a);
        foreach (string a in (string[])["boot", images.Vmlinux, "--memory", MemoryMiB.ToString(), "--module", images.Initramfs, "--cmdline", cmdline])
            psi.ArgumentList.Add(a);
        psi.Environment["VMMKIT_EMULATOR_TIER"] = tier;
        return psi;
    }

    /// <summary>QEMU TCG: the same vmlinux as a PVH kernel (-kernel reads its PHYS32_ENTRY note), the initramfs as -initrd.</summary>
    public static ProcessStartInfo QemuBoot(BootImages images, string cmdline)
    {
        var psi = new ProcessStartInfo("qemu-system-x86_64");
        foreach (string a in (string[])["-accel", "tcg", "-cpu", "max", "-m", MemoryMiB.ToString(), "-display", "none", "-nodefaults",
                     "-no-reboot", "-serial", "stdio", "-kernel", images.Vmlinux, "-initrd", images.Initramfs, "-append", cmdline])
            psi.ArgumentList.Add(a);
        return psi;
    }

    /// <summary>The NativeAOT vmmkit-hv when published, else the JIT build run by dotnet.</summary>
    private static (ProcessStartInfo Start, string Kind) VmmkitHv(string repo)
    {
        string bin = Path.Combine(repo, "samples/ReferenceHypervisor/src/bin/Release/net10.0");
        string aot = Path.Combine(bin, "linux-x64/publish/vmmkit-hv");
        if (File.Exists(aot))
            return (new ProcessStartInfo(aot), "NativeAOT");
        string dll = Path.Combine(bin, "vmmkit-hv.dll");
        if (!File.Exists(dll))
            throw new InvalidOperationException("build vmmkit-hv first: dotnet publish samples/ReferenceHypervisor/src -r linux-x64 -c Release (or dotnet build -c Release)");
        var jit = new ProcessStartInfo("dotnet");
        jit.ArgumentList.Add(dll);
        return (jit, "JIT");
    }
}
