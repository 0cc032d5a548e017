using System.Buffers.Binary;
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
    public static BootImages Prepare(string repo)
    {
        string root = Environment.GetEnvironmentVariable("VMMKIT_DEBIAN_LINUX_ROOT") is { Length: > 0 } r ? r
            : Path.Combine(repo, "artifacts", "debian", "linux-image");
        return new BootImages(ExtractVmlinux(root), BuildInitramfs());
    }

    private static string ExtractVmlinux(string root)
    {
        string boot = Path.Combine(root, "boot");
        string? bz = Directory.Exists(boot) ? Directory.GetFiles(boot, "vmlinuz-*").Order(StringComparer.Ordinal).LastOrDefault() : null;
        if (bz is null)
            throw new InvalidOperationException($"Debian's linux-image-amd64 is not unpacked under {root}: run ./test.sh once, or set VMMKIT_DEBIAN_LINUX_ROOT");
        byte[] image = File.ReadAllBytes(bz);
        string dir = Path.Combine(Path.GetTempPath(), "vmmkit-linux");
        Directory.CreateDirectory(dir);
        string output = Path.Combine(dir, $"vmlinux-{Path.GetFileName(bz)["vmlinuz-".Length..]}-{image.Length}");
        if (File.Exists(output))
            return output;

        // The setup header (Documentation/x86/boot.rst, protocol 2.08+): setup_sects at 0x1f1, payload_offset at 0x248 and
        // payload_length at 0x24c, relative to the protected-mode code after (setup_sects + 1) * 512 bytes; Debian's is xz.
        if (BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(0x202)) != 0x53726448)
            throw new InvalidOperationException($"{bz} has no bzImage setup header");
        int setupSects = image[0x1f1] == 0 ? 4 : image[0x1f1];
        int offset = (setupSects + 1) * 512 + (int)BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(0x248));
        int length = (int)BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(0x24c));
        string temp = output + ".partial";
        var psi = new ProcessStartInfo("xz", "-dc --single-stream") { RedirectStandardInput = true, RedirectStandardOutput = true };
        using (var p = Start(psi, "xz-utils"))
        using (var file = File.Create(temp))
        {
            var copy = p.StandardOutput.BaseStream.CopyToAsync(file);
            p.StandardInput.BaseStream.Write(image, offset, length);
            p.StandardInput.Close();
            copy.Wait();
            p.WaitForExit();
            if (p.ExitCode != 0)
                throw new InvalidOperationException($"xz failed on {bz}");
        }

        File.Move(temp, output, overwrite: true);
        return output;
    }

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
