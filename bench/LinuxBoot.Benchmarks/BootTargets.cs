using System.Diagnostics;

namespace VmmKit.LinuxBoot.Benchmarks;

/// <summary>
/// The boots compared in one run, each a function from the guest's kernel command line to the process that boots it:
/// vmmkit-hv's quick path (<c>vmmkit-hv boot</c>: no Dom0 process, its in-process xenstored and console backend, hvc0) in
/// each execution tier of the emulated processor, and QEMU TCG booting the same vmlinux and initramfs as plain PVH with a
/// serial console; and the toolstack path: a host (<c>vmmkit-hv host</c> with the Dom0 process) brought up first, then
/// <c>vmmkit-xl create -c</c>, timed from the moment xl starts (<see cref="Target.StartMarker"/>).
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

    /// <summary>
    /// One boot: a name and the process that performs it. With a <paramref name="StartMarker"/> the clock starts when the
    /// process prints that line (what came before, such as bringing a host up, is not the boot being timed).
    /// </summary>
    public sealed record Target(string Name, ProcessStartInfo Start, string? StartMarker = null);

    /// <summary>The line the toolstack target prints just before it runs <c>vmmkit-xl create</c>.</summary>
    public const string XlCreateMarker = "vmmkit-bench: xl create";

    /// <summary>Every boot of the run, in order.</summary>
    public static IReadOnlyList<Target> All(string repo, BootImages images)
    {
        var (hv, kind) = VmmkitHv(repo);
        return
        [
            new($"vmmkit-hv boot ({kind}, interpreter)", HvBoot(hv, images, $"console=hvc0 {CommonCmdline}", "Interpreter")),
            new($"vmmkit-hv boot ({kind}, translator)", HvBoot(hv, images, $"console=hvc0 {CommonCmdline}", "Translator")),
            new("qemu-system-x86_64 -accel tcg (PVH, ttyS0)", QemuBoot(images, $"console=ttyS0 {CommonCmdline}")),
            new($"vmmkit-xl create -c (Dom0 process, {kind} vmmkit-hv, interpreter)", XlCreate(repo, hv, images, $"console=hvc0 {CommonCmdline}"), XlCreateMarker),
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

    /// <summary>
    /// The toolstack path, as a Xen host boots a guest: <c>vmmkit-hv host</c> with the Dom0 process on a fresh run directory,
    /// then, once Dom0's control socket is there, <see cref="XlCreateMarker"/> and <c>vmmkit-xl create -c</c> with an xl.cfg
    /// for the same kernel, initramfs and memory; the guest console is xl's stdout. The hypervisor runs in the background of
    /// the same process tree, so the timing's kill of the tree ends it.
    /// </summary>
    public static ProcessStartInfo XlCreate(string repo, ProcessStartInfo hv, BootImages images, string cmdline)
    {
        string dom0 = Path.Combine(repo, "samples/Dom0/daemon/bin/Release/net10.0/vmmkit-dom0");
        string xl = Path.Combine(repo, "samples/Dom0/src/bin/Release/net10.0/vmmkit-xl.dll");
        if (!File.Exists(dom0) || !File.Exists(xl))
            throw new InvalidOperationException("build Dom0 first: dotnet build -c Release samples/Dom0/daemon samples/Dom0/src");
        string rundir = Directory.CreateTempSubdirectory("vmmkit-bench-host-").FullName;
        File.WriteAllText(Path.Combine(rundir, "linux.cfg"), $"""
            name = "linux"
            type = "pvh"
            kernel = "{images.Vmlinux}"
            ramdisk = "{images.Initramfs}"
            extra = "{cmdline}"
            memory = {MemoryMiB}
            vcpus = 1
            """);
        string host = string.Join(' ', hv.ArgumentList.Prepend(hv.FileName).Select(Quote));
        string script = $"""
            {host} host --rundir {Quote(rundir)} --memory {MemoryMiB * 2} --dom0 {Quote(dom0)} >{Quote(rundir)}/host.log 2>&1 &
            for i in $(seq 600); do [ -S {Quote(rundir)}/dom0.sock ] && break; sleep 0.1; done
            echo '{XlCreateMarker}'
            exec dotnet {Quote(xl)} --rundir {Quote(rundir)} create -c {Quote(rundir)}/linux.cfg
            """;
        var psi = new ProcessStartInfo("bash", ["-c", script]);
        psi.Environment["VMMKIT_EMULATOR_TIER"] = "Interpreter";
        return psi;
    }

    private static string Quote(string s) => "'" + s.Replace("'", "'\\''", StringComparison.Ordinal) + "'";

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
