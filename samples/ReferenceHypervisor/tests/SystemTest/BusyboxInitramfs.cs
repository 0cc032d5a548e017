using System.Diagnostics;
using VmmKit.TestSupport;

namespace VmmKit.ReferenceHypervisor.Tests.SystemTest;

/// <summary>
/// A tiny initramfs (an uncompressed newc cpio archive, which Linux unpacks as is) made from Debian's busybox-static:
/// /bin/busybox and an /init shell script that prints <see cref="Marker"/> and the kernel's name and release, then
/// powers the machine off (busybox <c>poweroff -f</c>: the kernel halts its last CPU with interrupts disabled, which
/// vmmkit-hv, as Xen's <c>hvm_hlt</c>, takes as power-off).
/// </summary>
public static class BusyboxInitramfs
{
    /// <summary>The line /init prints first.</summary>
    public const string Marker = "vmmkit-init: /init is running";

    private static readonly Lazy<string> Archive = new(Build, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The archive's path (built once per test run in the temporary folder).</summary>
    public static string Path => Archive.Value;

    private static string Build()
    {
        string busybox = RequiredTool.RequireFile("/bin/busybox", "busybox-static");
        RequiredTool.Require("cpio", "cpio");
        string root = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"vmmkit-initramfs-{Environment.ProcessId}");
        if (Directory.Exists(root))
            Directory.Delete(root, recursive: true);
        foreach (string dir in (string[])["bin", "dev", "proc", "sys"])
            Directory.CreateDirectory(System.IO.Path.Combine(root, dir));
        File.Copy(busybox, System.IO.Path.Combine(root, "bin", "busybox"));
        string init = System.IO.Path.Combine(root, "init");
        File.WriteAllText(init, $"#!/bin/busybox sh\n/bin/busybox echo \"{Marker}\"\n/bin/busybox uname -sr\n/bin/busybox poweroff -f\n");

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
