using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using VmmKit.ReferenceHypervisor.Tests.SystemTest;
using VmmKit.TestSupport;
using Xunit.Abstractions;

namespace VmmKit.Dom0.Tests;

/// <summary>
/// Debian's Linux (the vmlinux of linux-image-amd64, extracted by the test) built by <c>vmmkit-xl create</c> from an
/// xl.cfg, with an initramfs made from Debian's busybox-static and a raw ext2 disk made by Debian's mke2fs: Linux
/// finds hvc0, XenStore and xvda, busybox init starts a shell on hvc0, and the test types into <c>vmmkit-xl console</c>
/// through a pseudo-terminal (util-linux <c>script</c>) as a person would: <c>uname -a</c>, <c>/proc/cpuinfo</c>,
/// <c>/proc/interrupts</c>, a mount of xvda with a file written and read back, and <c>poweroff</c>, after which the
/// domain is gone, Dom0 reported the poweroff, and the file is on the image (Debian's debugfs reads it).
/// </summary>
public sealed class LinuxXlTests(ITestOutputHelper output)
{
    /// <summary>The line /init prints before it hands over to busybox init.</summary>
    private const string Marker = "vmmkit-init: modules loaded, starting init";

    /// <summary>The shell's prompt (set in /etc/profile).</summary>
    private const string Prompt = "vmmkit-linux:/# ";

    /// <summary>The kernel command line: hvc0 as the console, no crypto self-tests (slow on the interpreter).</summary>
    private const string Cmdline = "console=hvc0 loglevel=6 cryptomgr.notests";

    /// <summary>Modules /init loads, in dependency order (their modinfo depends=/softdep=): ext4 (which serves ext2) and blkfront.</summary>
    private static readonly string[] Modules = ["crc32c_generic", "crc16", "mbcache", "jbd2", "ext4", "xen-blkfront"];

    private static readonly Lazy<string> Initramfs = new(BuildInitramfs, LazyThreadSafetyMode.ExecutionAndPublication);

    private static readonly TimeSpan BootTimeout = TimeSpan.FromMinutes(15), CommandTimeout = TimeSpan.FromMinutes(5);

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void Debian_linux_from_xl_create_gives_a_shell_on_xl_console_that_uses_xvda_and_powers_off(int vcpus)
    {
        string script = RequiredTool.Require("script", "bsdutils");
        string mke2fs = RequiredTool.Require("mke2fs", "e2fsprogs");
        string debugfs = RequiredTool.Require("debugfs", "e2fsprogs");
        string initramfs = Initramfs.Value;
        using var host = StartHost();

        // A 16 MiB ext2 image seeded with one file.
        string seed = Path.Combine(host.RunDirectory, "seed");
        Directory.CreateDirectory(seed);
        File.WriteAllText(Path.Combine(seed, "hello.txt"), "seeded by mke2fs on the host\n");
        string image = Path.Combine(host.RunDirectory, "xvda.img");
        Run(mke2fs, "-q", "-F", "-t", "ext2", "-d", seed, image, "16M");

        string cfg = Path.Combine(host.RunDirectory, "linux.cfg");
        File.WriteAllText(cfg, $"""
            name = "linux"
            type = "pvh"
            kernel = "{DebianLinux.VmlinuxPath}"
            ramdisk = "{initramfs}"
            extra = "{Cmdline}"
            memory = 256
            vcpus = {vcpus}
            disk = [ 'format=raw,vdev=xvda,access=rw,target={image}' ]
            """);
        var clock = Stopwatch.StartNew();
        var (code, stdout, stderr) = XlTests.Xl(host, null, "create", cfg);
        Assert.True(code == 0, $"{stderr}\n{host.Log}");
        Assert.Contains("Started domain linux (id=1)", stdout);

        using var console = PtyConsole.Start(script, host, "linux");
        try
        {
            console.WaitFor(Prompt, BootTimeout);
            output.WriteLine($"xl create to the shell prompt: {clock.Elapsed.TotalSeconds:F1} s");

            string uname = console.Run("uname -a");
            Assert.Matches(@"Linux \S+ 6\.1\.0-\d+-amd64 #1 SMP .* x86_64 GNU/Linux", uname);

            string cpuinfo = console.Run("cat /proc/cpuinfo");
            Assert.Equal(vcpus, Regex.Matches(cpuinfo, @"(?m)^processor\s+: \d+$").Count);
            Assert.Matches(@"(?m)^flags\s+: .*\bhypervisor\b", cpuinfo);

            string interrupts = console.Run("cat /proc/interrupts");
            var counts = InterruptCounts(interrupts, vcpus);
            // Chip and handler type are two columns: "xen-percpu -virq timer0", "xen-dyn -event xenbus" (lateeoi for backends' queues).
            Assert.True(counts.Any(c => c.Chip == "xen-percpu" && c.Name == "-virq timer0" && c.Total > 0), interrupts);
            Assert.True(counts.Count(c => c.Chip.StartsWith("xen-dyn", StringComparison.Ordinal) && c.Name.StartsWith("-event ", StringComparison.Ordinal) && c.Total > 0) >= 3,
                interrupts);   // xenbus, hvc_console and blkif each counted events

            string disk = console.Run("mount -t ext2 /dev/xvda /mnt && cat /mnt/hello.txt && echo 'written by Linux through xen-blkfront' > /mnt/guest.txt && umount /mnt && echo unmounted");
            Assert.Contains("seeded by mke2fs on the host", disk);
            Assert.Contains("unmounted", disk);
            string readBack = console.Run("mount -t ext2 -o ro /dev/xvda /mnt && cat /mnt/guest.txt && umount /mnt");
            Assert.Contains("written by Linux through xen-blkfront", readBack);

            console.Send("poweroff\r");
            Assert.True(console.WaitForExit(CommandTimeout), $"xl console did not end after poweroff:\n{console.Tail}\n{host.Log}");
            Assert.Equal(0, console.ExitCode);
        }
        finally
        {
            output.WriteLine(console.Transcript);
        }

        // Without an ACPI sleep state (the FADT is hardware-reduced) Linux halts; its last vCPU's HLT with interrupts
        // disabled is the poweroff, as Xen's hvm_hlt (LinuxBootTests accepts the same two endings).
        Assert.Matches(@"reboot: (Power down|System halted)", console.Transcript);
        // Dom0 logs these before it destroys the domain (which ends the console), but its log reaches the test through
        // a pipe read on another thread, so it may still be on the way.
        XlTests.WaitForConsoleOrLog(host, "Domain 1 has shut down, reason code 0 0x0");
        XlTests.WaitForConsoleOrLog(host, "Action for shutdown reason code 0 is destroy");
        (code, stdout, _) = XlTests.Xl(host, null, "list");
        Assert.Equal(0, code);
        Assert.DoesNotContain("linux", stdout);
        Assert.Equal("written by Linux through xen-blkfront\n", Run(debugfs, "-R", "cat /guest.txt", image));
    }

    /// <summary>The host with room for Dom0 and a 256 MiB guest, once vmmkit-dom0 listens.</summary>
    private static HostProcess StartHost()
    {
        var host = HostProcess.Start(memoryMiB: 512, dom0: Path.Combine(AppContext.BaseDirectory, "vmmkit-dom0"));
        var clock = Stopwatch.StartNew();
        while (!File.Exists(Path.Combine(host.RunDirectory, "dom0.sock")))
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(60))
                throw new InvalidOperationException($"vmmkit-dom0 did not come up:\n{host.Log}");
            Thread.Sleep(50);
        }

        return host;
    }

    /// <summary>
    /// /init: busybox's applets installed, /dev, /proc and /sys mounted, the modules loaded; then busybox init, whose
    /// inittab runs a login shell on hvc0 and unmounts everything at poweroff.
    /// </summary>
    private static string BuildInitramfs()
    {
        string moduleRoot = Path.Combine(DebianLinux.Root, "lib", "modules");
        var files = new List<string>();
        foreach (string m in Modules)
        {
            string[] found = Directory.Exists(moduleRoot) ? Directory.GetFiles(moduleRoot, m + ".ko", SearchOption.AllDirectories) : [];
            if (found.Length != 1)
                throw new InvalidOperationException($"{m}.ko not found (once) under {moduleRoot}: unpack linux-image-amd64 (./test.sh does)");
            files.Add(found[0]);
        }

        string init = $$"""
            /bin/busybox mkdir -p /sbin /usr/bin /usr/sbin /etc /mnt /tmp
            /bin/busybox --install -s
            mount -t devtmpfs dev /dev
            mount -t proc proc /proc
            mount -t sysfs sys /sys
            for m in {{string.Join(' ', Modules)}}; do insmod /$m.ko || echo "vmmkit-init: insmod $m failed"; done
            echo 'hvc0::respawn:-/bin/sh' > /etc/inittab
            echo '::shutdown:/bin/umount -a -r' >> /etc/inittab
            echo "export PS1='vmmkit-linux:\w# '" > /etc/profile
            echo "{{Marker}}"
            exec /bin/busybox init

            """;
        return BusyboxInitramfs.Build("xl-shell", init, [.. files]);
    }

    private sealed record InterruptLine(string Chip, string Name, long Total);

    /// <summary>/proc/interrupts' numbered lines: one count per CPU, the chip, then the handler's name.</summary>
    private static List<InterruptLine> InterruptCounts(string text, int cpus)
    {
        var lines = new List<InterruptLine>();
        foreach (Match m in Regex.Matches(text, @"(?m)^\s*\d+:((?:\s+\d+){" + cpus + @"})\s+(\S+)\s+(.*?)\s*$"))
        {
            long total = m.Groups[1].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries).Sum(long.Parse);
            lines.Add(new InterruptLine(m.Groups[2].Value, Regex.Replace(m.Groups[3].Value, @"\s+", " "), total));
        }

        return lines;
    }

    private static string Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args)
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"{file} {string.Join(' ', args)}: exit {p.ExitCode}\n{stdout}{err.Result}");
        return stdout;
    }

    /// <summary>
    /// <c>vmmkit-xl console</c> on a pseudo-terminal: util-linux <c>script</c> runs it with the pty as its terminal (so
    /// xl puts it in raw mode, as on a person's terminal) and relays the test's keys to it and its output back.
    /// </summary>
    private sealed class PtyConsole : IDisposable
    {
        private readonly Process _process;
        private readonly StringBuilder _text = new();
        private readonly Task _reader;
        private int _commands;

        private PtyConsole(Process process)
        {
            _process = process;
            _reader = Task.Run(() =>
            {
                var decoder = Encoding.UTF8.GetDecoder();
                var bytes = new byte[4096];
                var chars = new char[4096];
                int n;
                while ((n = _process.StandardOutput.BaseStream.Read(bytes)) > 0)
                {
                    int c = decoder.GetChars(bytes, 0, n, chars, 0);
                    lock (_text)
                        _text.Append(chars, 0, c);
                }
            });
        }

        public static PtyConsole Start(string script, HostProcess host, string domain)
        {
            string xl = $"dotnet '{Path.Combine(AppContext.BaseDirectory, "vmmkit-xl.dll")}' --rundir '{host.RunDirectory}' console {domain}";
            var psi = new ProcessStartInfo(script) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (string a in (string[])["-q", "-f", "-e", "-c", xl, "/dev/null"])
                psi.ArgumentList.Add(a);
            psi.Environment["SHELL"] = "/bin/sh";
            psi.Environment["TERM"] = "dumb";
            var p = Process.Start(psi)!;
            p.ErrorDataReceived += (_, _) => { };
            p.BeginErrorReadLine();
            return new PtyConsole(p);
        }

        /// <summary>Everything shown so far, line ends as "\n".</summary>
        public string Transcript
        {
            get
            {
                lock (_text)
                    return _text.ToString().Replace("\r", "", StringComparison.Ordinal);
            }
        }

        public string Tail => Transcript[Math.Max(0, Transcript.Length - 3000)..];

        public int ExitCode => _process.ExitCode;

        public void Send(string keys)
        {
            _process.StandardInput.Write(keys);
            _process.StandardInput.Flush();
        }

        /// <summary>Waits until <paramref name="text"/> shows after offset <paramref name="from"/>; returns where it ends.</summary>
        public int WaitFor(string text, TimeSpan timeout, int from = 0)
        {
            var clock = Stopwatch.StartNew();
            while (true)
            {
                string t = Transcript;
                int at = t.IndexOf(text, Math.Min(from, t.Length), StringComparison.Ordinal);
                if (at >= 0)
                    return at + text.Length;
                if (clock.Elapsed > timeout || _process.HasExited)
                    throw new Xunit.Sdk.XunitException($"'{text}' never appeared on xl console; its tail:\n{Tail}");
                Thread.Sleep(100);
            }
        }

        /// <summary>Types <paramref name="command"/> and Enter; returns what the shell printed up to its next prompt.</summary>
        public string Run(string command)
        {
            int n = ++_commands;
            int start = Transcript.Length;
            // The end marker is computed by the shell, so the echo of the typed line never matches it.
            Send($"{command}; echo @@done-$((0+{n}))@@\r");
            int end = WaitFor($"\n@@done-{n}@@\n", CommandTimeout, start);
            WaitFor(Prompt, CommandTimeout, end);
            return Transcript[start..end];
        }

        public bool WaitForExit(TimeSpan timeout)
        {
            if (!_process.WaitForExit(timeout))
                return false;
            _reader.Wait(TimeSpan.FromSeconds(5));
            return true;
        }

        public void Dispose()
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit();
            }

            _process.Dispose();
        }
    }
}
