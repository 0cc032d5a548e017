using System.Diagnostics;
using VmmKit.TestSupport;

namespace VmmKit.Dom0.Tests;

/// <summary>
/// Debian's GRUB PVH image (grub-xen-host) started with <c>vmmkit-xl create</c>: GRUB reaches the Dom0 process's
/// xenstored on its store ring, finds its vbd and connects to Dom0's block backend, reads the MBR and ext2 of a disk the
/// test makes with Debian's sfdisk and mke2fs, runs its /boot/grub/grub.cfg, and the output shows on <c>xl console</c>.
/// </summary>
public sealed class GrubPvhXlTests
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

    [Fact]
    public void Grub_pvh_created_by_xl_runs_the_grub_cfg_on_its_disk_and_shows_it_on_xl_console()
    {
        RequiredTool.RequireFile(GrubImage, "grub-xen-host");
        string sfdisk = RequiredTool.Require("sfdisk", "fdisk");
        string mke2fs = RequiredTool.Require("mke2fs", "e2fsprogs");
        using var host = XlTests.StartHostWithDom0();

        // An 8 MiB disk: an MBR partition table with one Linux partition at sector 2048, holding ext2 with grub.cfg and a file.
        string root = Path.Combine(host.RunDirectory, "root");
        Directory.CreateDirectory(Path.Combine(root, "boot", "grub"));
        File.WriteAllText(Path.Combine(root, "boot", "grub", "grub.cfg"), """
            echo GRUBCFG-START
            ls
            ls (xen/xvda,msdos1)/
            cat (xen/xvda,msdos1)/hello.txt
            echo GRUBCFG-END
            halt
            """);
        File.WriteAllText(Path.Combine(root, "hello.txt"), "hello from the ext2 file system on xvda1\n");
        string image = Path.Combine(host.RunDirectory, "disk.img");
        using (var f = File.Create(image))
            f.SetLength(8 << 20);
        Run(sfdisk, $"-q \"{image}\"", "label: dos\nstart=2048, type=83\n");
        Run(mke2fs, $"-q -F -t ext2 -d \"{root}\" -E offset={2048 * 512} \"{image}\" 7M");

        string cfg = Path.Combine(host.RunDirectory, "grub.cfg");
        File.WriteAllText(cfg, $"""
            name = "grub"
            type = "pvh"
            kernel = "{GrubImage}"
            memory = 64
            on_poweroff = "preserve"
            disk = [ 'format=raw,vdev=xvda,access=rw,target={image}' ]
            """);
        var (code, _, stderr) = XlTests.Xl(host, null, "create", cfg);
        Assert.True(code == 0, $"{stderr}\n{host.Log}");

        string transcript = XlTests.WaitForConsole(host, "grub", "GRUBCFG-END").Replace("\r", "");
        Assert.Contains("Welcome to GRUB!", transcript);
        int start = transcript.IndexOf("GRUBCFG-START\n", StringComparison.Ordinal), end = transcript.IndexOf("GRUBCFG-END", StringComparison.Ordinal);
        Assert.True(start >= 0 && end > start, transcript);
        string body = transcript[start..end];
        Assert.Contains("(xen/xvda) (xen/xvda,msdos1)", body);
        Assert.Contains("lost+found/ boot/ hello.txt", body);
        Assert.Contains("hello from the ext2 file system on xvda1\n", body);
        Assert.True(File.ReadAllText(Path.Combine(host.RunDirectory, "console", "guest-1.log")).Contains("GRUBCFG-START", StringComparison.Ordinal));
    }
}
