using System.Diagnostics;
using System.Text;
using VmmKit.TestSupport;

namespace VmmKit.Vmx.Tests.Bochs;

/// <summary>Boots a floppy image in Debian's Bochs (headless, debugger continued from an rc file) and returns the port 0xE9 log lines.</summary>
internal static class BochsMachine
{
    public const string LinePrefix = "@";

    public static IReadOnlyList<string> Run(byte[] floppyImage, string cpuModel, int megabytes = 32, int timeoutSeconds = 90)
    {
        string bochs = RequiredTool.Require("bochs-bin", "bochs");
        RequiredTool.RequireFile("/usr/share/bochs/BIOS-bochs-latest", "bochsbios");
        RequiredTool.RequireFile("/usr/share/bochs/VGABIOS-lgpl-latest", "vgabios");
        string dir = Path.Combine(Path.GetTempPath(), "vmmkit-bochs-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            File.WriteAllBytes(Path.Combine(dir, "fd.img"), floppyImage);
            // ips only paces emulated time (sync=none): a low value shortens the BIOS's timed waits.
            // rfb is the display library Debian's "bochs" package ships without X; timeout=0 keeps it from waiting for a client.
            File.WriteAllText(Path.Combine(dir, "bochsrc"), $"""
                megs: {megabytes}
                cpu: model={cpuModel}, ips=1000000, ignore_bad_msrs=0
                romimage: file=/usr/share/bochs/BIOS-bochs-latest
                vgaromimage: file=/usr/share/bochs/VGABIOS-lgpl-latest
                floppya: 1_44=fd.img, status=inserted
                boot: floppy
                display_library: rfb, options="timeout=0"
                port_e9_hack: enabled=1
                log: bochs.log
                clock: sync=none
                speaker: enabled=0
                sound: waveoutdrv=dummy, waveindrv=dummy, midioutdrv=dummy
                """);
            File.WriteAllText(Path.Combine(dir, "cmds"), "c\n");
            var psi = new ProcessStartInfo(bochs)
            {
                WorkingDirectory = dir,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                RedirectStandardInput = true,
                UseShellExecute = false,
            };
            foreach (var arg in new[] { "-q", "-f", "bochsrc", "-rc", "cmds" })
                psi.ArgumentList.Add(arg);
            using var p = Process.Start(psi)!;
            p.StandardInput.Close();
            var stdout = new StringBuilder();
            var stderr = new StringBuilder();
            p.OutputDataReceived += (_, e) => { if (e.Data != null) lock (stdout) stdout.AppendLine(e.Data); };
            p.ErrorDataReceived += (_, e) => { if (e.Data != null) lock (stderr) stderr.AppendLine(e.Data); };
            p.BeginOutputReadLine();
            p.BeginErrorReadLine();
            if (!p.WaitForExit(timeoutSeconds * 1000))
            {
                p.Kill(entireProcessTree: true);
                p.WaitForExit();
                throw new TimeoutException($"Bochs did not finish in {timeoutSeconds} s. Log:\n{Tail(stdout)}");
            }
            p.WaitForExit();
            var lines = new List<string>();
            string all;
            lock (stdout) all = stdout.ToString();
            foreach (var raw in all.Split('\n'))
            {
                int at = raw.IndexOf(LinePrefix, StringComparison.Ordinal);
                if (at >= 0 && raw[(at + 1)..].Trim() is { Length: > 0 } line)
                {
                    // The debugger's own output follows the final marker on the same line.
                    if (line.StartsWith('D'))
                        line = "D";
                    lines.Add(line);
                    if (line == "D")
                        break;
                }
            }
            if (lines.Count == 0 || lines[^1] != "D")
                throw new InvalidOperationException($"The Bochs harness did not finish (last lines: {string.Join(" | ", lines.TakeLast(5))}).\nstdout:\n{Tail(stdout)}\nbochs.log:\n{TailFile(Path.Combine(dir, "bochs.log"))}");
            return lines;
        }
        finally
        {
            // VMMKIT_BOCHS_KEEP=1 keeps the image, bochsrc and bochs.log for debugging.
            if (Environment.GetEnvironmentVariable("VMMKIT_BOCHS_KEEP") != "1")
                try { Directory.Delete(dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    private static string Tail(StringBuilder sb)
    {
        string s;
        lock (sb) s = sb.ToString();
        return s.Length > 4000 ? s[^4000..] : s;
    }

    private static string TailFile(string path)
    {
        if (!File.Exists(path))
            return "";
        var all = File.ReadAllText(path);
        return all.Length > 4000 ? all[^4000..] : all;
    }
}
