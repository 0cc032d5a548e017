using System.Diagnostics;
using VmmKit.TestSupport;

namespace VmmKit.ReferenceHypervisor.Tests.SystemTest;

/// <summary>
/// A tiny initramfs (an uncompressed newc cpio archive, which Linux unpacks as is) made from Debian's busybox-static:
/// /bin/busybox and an /init shell script that prints <see cref="Marker"/> and the kernel's name and release, then
/// powers the machine off (busybox <c>poweroff -f</c>: the kernel halts its last CPU with interrupts disabled, which
/// vmmkit-hv, as Xen's <c>hvm_hlt</c>, takes as power-off). A second archive, <see cref="DiskReaderPath"/>, also loads
/// Debian's xen-blkfront module (<c>CONFIG_XEN_BLKDEV_FRONTEND=m</c>: it is not in the kernel image) and reads the first
/// and last sector of <c>/dev/xvda</c>.
/// </summary>
public static class BusyboxInitramfs
{
    /// <summary>The line /init prints first.</summary>
    public const string Marker = "vmmkit-init: /init is running";

    /// <summary>The size of the disk <see cref="DiskReaderPath"/>'s /init reads, in 512-byte sectors.</summary>
    public const int DiskSectors = 16384;

    private static readonly Lazy<string> Archive = new(BuildPlain, LazyThreadSafetyMode.ExecutionAndPublication);
    private static readonly Lazy<string> DiskReader = new(BuildDiskReader, LazyThreadSafetyMode.ExecutionAndPublication);
    private static readonly Lazy<string> InterruptsReader = new(BuildInterruptsReader, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The archive's path (built once per test run in the temporary folder).</summary>
    public static string Path => Archive.Value;

    /// <summary>
    /// The archive whose /init mounts devtmpfs, loads xen-blkfront.ko from Debian's linux-image, prints
    /// <c>/proc/partitions</c>, the first line of sector 0 and of sector <see cref="DiskSectors"/> - 1 of
    /// <c>/dev/xvda</c>, then powers off.
    /// </summary>
    public static string DiskReaderPath => DiskReader.Value;

    /// <summary>
    /// The archive whose /init mounts /proc, prints <c>/proc/interrupts</c> (each CPU's count of every interrupt) and the
    /// number of online CPUs (busybox <c>nproc</c>), then powers off: what an SMP boot shows of its CPUs.
    /// </summary>
    public static string InterruptsReaderPath => InterruptsReader.Value;

    private static string BuildInterruptsReader() =>
        Build("interrupts", $"/bin/busybox echo \"{Marker}\"\n/bin/busybox mount -t proc proc /proc\n/bin/busybox cat /proc/interrupts\n" +
            "/bin/busybox echo \"online CPUs: $(/bin/busybox nproc)\"\n/bin/busybox poweroff -f\n", []);

    private static string BuildPlain() =>
        Build("plain", $"/bin/busybox echo \"{Marker}\"\n/bin/busybox uname -sr\n/bin/busybox poweroff -f\n", []);

    private static string BuildDiskReader()
    {
        string[] found = Directory.Exists(System.IO.Path.Combine(DebianLinux.Root, "lib", "modules"))
            ? Directory.GetFiles(System.IO.Path.Combine(DebianLinux.Root, "lib", "modules"), "xen-blkfront.ko", SearchOption.AllDirectories)
            : [];
        if (found.Length != 1)
            throw new InvalidOperationException($"xen-blkfront.ko not found (once) under {DebianLinux.Root}/lib/modules: unpack linux-image-amd64 (./test.sh does)");
        const string B = "/bin/busybox";
        string init = $"""
            {B} echo "{Marker}"
            {B} mount -t devtmpfs dev /dev
            {B} mount -t proc proc /proc
            {B} insmod /xen-blkfront.ko
            {B} cat /proc/partitions
            {B} dd if=/dev/xvda bs=512 count=1 2>/dev/null | {B} head -n 1
            {B} dd if=/dev/xvda bs=512 skip={DiskSectors - 1} count=1 2>/dev/null | {B} head -n 1
            {B} poweroff -f

            """;
        return Build("disk", init, [found[0]]);
    }

    /// <summary>
    /// Builds an archive named <paramref name="name"/>: /bin/busybox, /init (a busybox sh script of
    /// <paramref name="initBody"/>) and <paramref name="files"/> copied to its root; returns its path.
    /// </summary>
    internal static string Build(string name, string initBody, string[] files)
    {
        string busybox = RequiredTool.RequireFile("/bin/busybox", "busybox-static");
        RequiredTool.Require("cpio", "cpio");
        string root = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"vmmkit-initramfs-{name}-{Environment.ProcessId}");
        if (Directory.Exists(root))
            Directory.Delete(root, recursive: true);
        foreach (string dir in (string[])["bin", "dev", "proc", "sys"])
            Directory.CreateDirectory(System.IO.Path.Combine(root, dir));
        File.Copy(busybox, System.IO.Path.Combine(root, "bin", "busybox"));
        foreach (string file in files)
            File.Copy(file, System.IO.Path.Combine(root, System.IO.Path.GetFileName(file)));
        File.WriteAllText(System.IO.Path.Combine(root, "init"), "#!/bin/busybox sh\n" + initBody);

        string output = root + ".cpio";
        var psi = new ProcessStartInfo("sh", ["-c", "chmod 755 init && find . | LC_ALL=C sort | cpio -o -H newc --quiet"])
        {
            WorkingDirectory = root,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using (var p = Process.Start(psi)!)
        using (var file = File.Create(output))
        {
            var copy = p.StandardOutput.BaseStream.CopyToAsync(file);
            string err = p.StandardError.ReadToEnd();
            copy.Wait();
            p.WaitForExit();
            if (p.ExitCode != 0)
                throw new InvalidOperationException($"cpio failed: {err}");
        }

        Directory.Delete(root, recursive: true);
        return output;
    }
}
