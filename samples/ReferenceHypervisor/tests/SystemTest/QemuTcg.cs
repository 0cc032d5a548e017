using System.Diagnostics;
using VmmKit.TestSupport;

namespace VmmKit.ReferenceHypervisor.Tests.SystemTest;

/// <summary>The processor oracle: Debian's qemu-system-x86_64 with the TCG accelerator booting a PVH ELF kernel with -kernel.</summary>
public static class QemuTcg
{
    /// <summary>The CPU model: every feature QEMU 7.2's TCG implements (SSE4.2, POPCNT, BMI1/2, XSAVE, SMEP, SMAP, NX, x2APIC).</summary>
    public const string CpuModel = "max";

    /// <summary>A QEMU run's outcome.</summary>
    public sealed record Result(string Transcript, int ExitCode, bool TimedOut, string Stderr);

    /// <summary>
    /// Starts a run: port 0xE9 (isa-debugcon) is the transcript, port 0xF4 (isa-debug-exit) ends QEMU,
    /// -no-reboot turns a triple fault into an exit. Serial output is discarded unless <paramref name="serial"/> names a file.
    /// </summary>
    public static Task<Result> RunAsync(string kernel, TimeSpan timeout, string? append = null, int memoryMiB = 64, string? serial = null)
    {
        RequiredTool.Require("qemu-system-x86_64", "qemu-system-x86");
        string debugcon = Path.Combine(Path.GetTempPath(), $"vmmkit-qemu-{Environment.ProcessId}-{Guid.NewGuid():N}.txt");
        var psi = new ProcessStartInfo("qemu-system-x86_64") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (string a in new[]
        {
            "-accel", "tcg", "-cpu", CpuModel, "-machine", "pc", "-m", memoryMiB.ToString(), "-nographic", "-no-reboot",
            "-display", "none", "-nodefaults", "-kernel", kernel, "-debugcon", "file:" + debugcon,
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-serial", serial is null ? "null" : "file:" + serial,
        })
            psi.ArgumentList.Add(a);
        if (append is not null)
        {
            psi.ArgumentList.Add("-append");
            psi.ArgumentList.Add(append);
        }

        return Task.Run(() =>
        {
            using var p = Process.Start(psi)!;
            p.StandardInput.Close();
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            bool exited = p.WaitForExit(timeout);
            if (!exited)
            {
                p.Kill();
                p.WaitForExit();
            }

            string transcript = File.Exists(debugcon) ? File.ReadAllText(debugcon, System.Text.Encoding.Latin1) : "";
            File.Delete(debugcon);
            return new Result(transcript, exited ? p.ExitCode : -1, !exited, stderr.Result);
        });
    }
}
