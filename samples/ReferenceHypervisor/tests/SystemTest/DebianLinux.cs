using System.Buffers.Binary;
using System.Diagnostics;
using VmmKit.TestSupport;

namespace VmmKit.ReferenceHypervisor.Tests.SystemTest;

/// <summary>
/// Debian's kernel (linux-image-amd64, unpacked by test.sh under artifacts/debian/linux-image, never committed) and the
/// vmlinux ELF inside its bzImage: the setup header's payload_offset/payload_length (Documentation/x86/boot.rst) locate
/// the compressed kernel, which xz (Debian's xz-utils) decompresses.
/// </summary>
public static class DebianLinux
{
    private static readonly Lazy<string> Vmlinux = new(Extract, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The unpacked package's root: $VMMKIT_DEBIAN_LINUX_ROOT, else artifacts/debian/linux-image.</summary>
    public static string Root =>
        Environment.GetEnvironmentVariable("VMMKIT_DEBIAN_LINUX_ROOT") is { Length: > 0 } r ? r
            : Path.Combine(GuestBuild.RepoRoot, "artifacts", "debian", "linux-image");

    /// <summary>The bzImage, boot/vmlinuz-*.</summary>
    public static string BzImage
    {
        get
        {
            string boot = Path.Combine(Root, "boot");
            string[] found = Directory.Exists(boot) ? Directory.GetFiles(boot, "vmlinuz-*") : [];
            if (found.Length == 0)
                throw new InvalidOperationException($"Debian's linux-image-amd64 is not unpacked under {Root}: run ./test.sh once (it runs `apt-get download` and `dpkg-deb -x`)");
            return found.Order(StringComparer.Ordinal).Last();
        }
    }

    /// <summary>The extracted vmlinux (cached in the temporary folder, keyed by the bzImage's name and size).</summary>
    public static string VmlinuxPath => Vmlinux.Value;

    private static string Extract()
    {
        RequiredTool.Require("xz", "xz-utils");
        string bz = BzImage;
        byte[] image = File.ReadAllBytes(bz);
        string dir = Path.Combine(Path.GetTempPath(), "vmmkit-linux");
        Directory.CreateDirectory(dir);
        string output = Path.Combine(dir, $"vmlinux-{Path.GetFileName(bz)["vmlinuz-".Length..]}-{image.Length}");
        if (File.Exists(output))
            return output;

        // Setup header (boot protocol 2.08+): setup_sects at 0x1f1 (0 means 4), "HdrS" at 0x202, payload at 0x248/0x24c,
        // relative to the protected-mode code that starts after the (setup_sects + 1) * 512 bytes of real-mode setup.
        if (BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(0x202)) != 0x53726448)
            throw new InvalidOperationException($"{bz} has no bzImage setup header");
        int setupSects = image[0x1f1] == 0 ? 4 : image[0x1f1];
        int payloadOffset = (setupSects + 1) * 512 + (int)BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(0x248));
        int payloadLength = (int)BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(0x24c));
        ReadOnlySpan<byte> xzMagic = [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];
        if (!image.AsSpan(payloadOffset).StartsWith(xzMagic))
            throw new InvalidOperationException($"{bz}: the payload is not an xz stream (Debian builds with CONFIG_KERNEL_XZ)");

        string temp = output + ".partial";
        var psi = new ProcessStartInfo("xz", "-dc --single-stream") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        using (var p = Process.Start(psi)!)
        using (var file = File.Create(temp))
        {
            var copy = p.StandardOutput.BaseStream.CopyToAsync(file);
            var stderr = p.StandardError.ReadToEndAsync();
            p.StandardInput.BaseStream.Write(image, payloadOffset, payloadLength);
            p.StandardInput.Close();
            copy.Wait();
            p.WaitForExit();
            if (p.ExitCode != 0)
                throw new InvalidOperationException($"xz failed on {bz}: {stderr.Result}");
        }

        File.Move(temp, output, overwrite: true);
        return output;
    }
}
