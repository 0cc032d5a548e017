using System.Diagnostics;
using VmmKit.TestSupport;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// Debian's GRUB PVH image (grub-xen-host) through the quick path, <c>vmmkit-hv boot grub-i386-xen_pvh.bin --disk IMG</c>:
/// GRUB talks to the in-process xenstored on its store ring, finds the vbd in <c>device/vbd</c>, connects to blkback
/// (xenbus handshake, x86_32-abi ring), reads the MBR partition table and the ext2 file system on a disk the test makes
/// with Debian's sfdisk and mke2fs, and runs the disk's /boot/grub/grub.cfg; its output arrives on the PV console ring.
/// </summary>
public class GrubPvhBootTests
{
    private const string GrubImage = "/usr/lib/grub-xen/grub-i386-xen_pvh.bin";

    private static void Run(string file, string args, string? stdin = null)
    {
        var psi = new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = stdin is not null };
        using var p = Process.Start(psi)!;
        if (stdin is not null)
        {
            p.StandardInput.Write(stdin);
            p.StandardInput.Close();
        }

        var err = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"{file} {args}: exit {p.ExitCode}\n{output}{err.Result}");
    }

    /// <summary>An 8 MiB disk: an MBR partition table with one Linux partition at sector 2048, holding ext2 with grub.cfg and a file.</summary>
    internal static string MakeDisk(string dir, string grubCfg)
    {
        string sfdisk = RequiredTool.Require("sfdisk", "fdisk");
        string mke2fs = RequiredTool.Require("mke2fs", "e2fsprogs");
        string root = Path.Combine(dir, "root");
        Directory.CreateDirectory(Path.Combine(root, "boot", "grub"));
        File.WriteAllText(Path.Combine(root, "boot", "grub", "grub.cfg"), grubCfg);
        File.WriteAllText(Path.Combine(root, "hello.txt"), "hello from the ext2 file system on xvda1\n");
        string image = Path.Combine(dir, "disk.img");
        using (var f = File.Create(image))
            f.SetLength(8 << 20);
        Run(sfdisk, $"-q \"{image}\"", "label: dos\nstart=2048, type=83\n");
        Run(mke2fs, $"-q -F -t ext2 -d \"{root}\" -E offset={2048 * 512} \"{image}\" 7M");
        return image;
    }

    [Fact]
    public void Grub_pvh_finds_its_pv_disk_and_runs_the_grub_cfg_on_it()
    {
        RequiredTool.RequireFile(GrubImage, "grub-xen-host");
        string dir = Directory.CreateTempSubdirectory("vmmkit-grub-").FullName;
        try
        {
            string image = MakeDisk(dir, """
                echo GRUBCFG-START
                ls
                ls (xen/xvda,msdos1)/
                cat (xen/xvda,msdos1)/hello.txt
                echo GRUBCFG-END
                halt
                """);
            var (code, stdout, stderr) = GuestBootTests.RunCli("boot", GrubImage, "--disk", image, "--max-instructions", "3000000000");
            string transcript = stdout.Replace("\r", "");
            Assert.True(code == 0, $"exit {code}\n{stderr}\n{transcript}");
            Assert.Contains("Welcome to GRUB!", transcript);
            int start = transcript.IndexOf("GRUBCFG-START\n", StringComparison.Ordinal), end = transcript.IndexOf("GRUBCFG-END", StringComparison.Ordinal);
            Assert.True(start >= 0 && end > start, transcript);
            string body = transcript[start..end];
            // `ls`: GRUB's devices, the PV disk and its partition among them.
            Assert.Contains("(xen/xvda) (xen/xvda,msdos1)", body);
            // `ls (xen/xvda,msdos1)/`: the ext2 root directory.
            Assert.Contains("lost+found/ boot/ hello.txt", body);
            // `cat`: the file's contents, read through blkback.
            Assert.Contains("hello from the ext2 file system on xvda1\n", body);
            Assert.Contains("shut down: poweroff", stderr);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
