using System.Diagnostics;

namespace VmmKit.LinuxBoot.Benchmarks;

/// <summary>
/// The guest: the vmlinux inside Debian's linux-image-amd64 bzImage (unpacked by test.sh under artifacts/debian/linux-image,
/// or $VMMKIT_DEBIAN_LINUX_ROOT), and an initramfs made from Debian's busybox-static whose /init starts an interactive
/// shell. Its prompt (PS1) begins with <see cref="PromptMarker"/> and a newline, so that a console read line by line sees it.
/// </summary>
internal sealed record BootImages(string Vmlinux, string Initramfs)
{
    /// <summary>The first line of the shell's prompt.</summary>
    public const string PromptMarker = "vmmkit-bench: shell prompt";

    /// <summary>Extracts the vmlinux (cached in the temporary folder, as LinuxBootTests does) and builds the initramfs.</summary>
    public static BootImages Prepare() =>
        new(VmmKit.ReferenceHypervisor.Tests.SystemTest.DebianLinux.VmlinuxPath, BuildInitramfs());

    private static string BuildInitramfs()
    {
        const string busybox = "/bin/busybox";
        if (!File.Exists(busybox))
            throw new InvalidOperationException("/bin/busybox is missing: apt-get install busybox-static");
        string root = Path.Combine(Path.GetTempPath(), $"vmmkit-bench-initramfs-{Environment.ProcessId}");
        if (Directory.Exists(root))
            Directory.Delete(root, recursive: true);
        foreach (string dir in (string[])["bin", "dev", "proc", "sys"])
            Directory.CreateDirectory(Path.Combine(root, dir));
        File.Copy(busybox, Path.Combine(root, "bin", "busybox"));
        File.WriteAllText(Path.Combine(root, "init"), $"""
            #!/bin/busybox sh
            /bin/busybox mount -t proc proc /proc
            export PS1='{PromptMarker}
            # '
            exec /bin/busybox sh -i

            """);

        string output = root + ".cpio";
        var psi = new ProcessStartInfo("sh", ["-c", "chmod 755 init && find . | LC_ALL=C sort | cpio -o -H newc --quiet"])
        {
            WorkingDirectory = root,
            RedirectStandardOutput = true,
        };
        using (var p = Start(psi, "cpio"))
        using (var file = File.Create(output))
        {
            p.StandardOutput.BaseStream.CopyTo(file);
            p.WaitForExit();
            if (p.ExitCode != 0)
                throw new InvalidOperationException("cpio failed");
        }

        Directory.Delete(root, recursive: true);
        return output;
    }

    private static Process Start(ProcessStartInfo psi, string package)
    {
        try
        {
            return Process.Start(psi)!;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"{psi.FileName} cannot run ({e.Message}): apt-get install {package}");
        }
    }
}
