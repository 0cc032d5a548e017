using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace VmmKit.ReferenceHypervisor.Benchmarks;

/// <summary>
/// Whole-process measurements that BenchmarkDotNet cannot make: time from process start to the
/// guest's first console line (JIT and NativeAOT builds of vmmkit-hv), and the instruction rate of the
/// workload guest and the integer benchmark guest (intbench) under vmmkit-hv and under QEMU TCG on the same machine.
/// </summary>
internal static partial class WholeGuestMeasurements
{
    public static int Startup(string repo, int runs)
    {
        string jitDll = Path.Combine(repo, "samples/ReferenceHypervisor/src/bin/Release/net10.0/vmmkit-hv.dll");
        string aot = Path.Combine(repo, "samples/ReferenceHypervisor/src/bin/Release/net10.0/linux-x64/publish/vmmkit-hv");
        if (!File.Exists(jitDll) || !File.Exists(aot))
        {
            Console.Error.WriteLine("build first: dotnet build samples/ReferenceHypervisor/src -c Release && dotnet publish samples/ReferenceHypervisor/src -r linux-x64 -c Release");
            return 1;
        }

        Report("JIT (dotnet vmmkit-hv.dll)", Enumerable.Range(0, runs).Select(_ => TimeToFirstLine("dotnet", [jitDll])).ToList());
        Report("NativeAOT (vmmkit-hv)", Enumerable.Range(0, runs).Select(_ => TimeToFirstLine(aot, [])).ToList());
        Report("NativeAOT (vmmkit-hv --tier translator)", Enumerable.Range(0, runs).Select(_ => TimeToFirstLine(aot, ["--tier", "translator"])).ToList());
        return 0;
    }

    /// <summary>
    /// The workload guest (<paramref name="iterations"/>) and the integer benchmark guest, intbench
    /// (<paramref name="intIterations"/>), under vmmkit-hv's interpreter and translator (NativeAOT) and QEMU TCG in the same
    /// invocation; every run's guest lines must be identical (and intbench must report PASS).
    /// </summary>
    public static int CompareWithQemu(string repo, int iterations, int intIterations)
    {
        string aot = Path.Combine(repo, "samples/ReferenceHypervisor/src/bin/Release/net10.0/linux-x64/publish/vmmkit-hv");
        string build = Path.Combine(repo, "samples/guests/build");
        if (!File.Exists(aot) || !File.Exists(Path.Combine(build, "workload.elf")) || !File.Exists(Path.Combine(build, "intbench.elf")))
        {
            Console.Error.WriteLine("build first: make -C samples/guests && dotnet publish samples/ReferenceHypervisor/src -r linux-x64 -c Release");
            return 1;
        }

        Compare(aot, Path.Combine(build, "workload.elf"), "workload", iterations);
        Compare(aot, Path.Combine(build, "intbench.elf"), "intbench", intIterations);
        return 0;
    }

    private static void Compare(string aot, string kernel, string guest, int iterations)
    {
        // vmmkit-hv reports its retired instruction count; the difference between N iterations and 0 is the guest's work.
        // Each tier (vmmkit-hv --tier) and QEMU run in the same invocation, so they see the same machine load.
        var rates = new List<(string Name, double Seconds, double Cpu)>();
        double instructions = 0;
        string? transcript = null;
        foreach (string tier in new[] { "interpreter", "translator" })
        {
            var (t0, c0, i0, _) = RunHv(aot, kernel, 0, tier);
            var (tn, cn, iN, lines) = RunHv(aot, kernel, iterations, tier);
            instructions = iN - i0;
            rates.Add(($"vmmkit-hv (NativeAOT, --tier {tier})", tn - t0, cn - c0));
            CheckTranscript(guest, tier, lines, ref transcript);
        }
        // QEMU runs the same image (it prints through port 0xE9 instead of console_io: a handful of instructions more).
        var (q0, qc0, _) = RunQemu(kernel, 0);
        var (qn, qcn, qLines) = RunQemu(kernel, iterations);
        CheckTranscript(guest, "QEMU TCG", qLines, ref transcript);
        double qemuSeconds = qn - q0, qemuCpu = qcn - qc0;
        // Wall clock and the CPU time the process got (user + system, from getrusage of the reaped child): on a loaded
        // machine the second is the comparable figure.
        Console.WriteLine($"{guest} iterations={iterations}: {instructions:N0} guest instructions (M instr/s by wall clock / by CPU time), " +
            "the same transcript under every run");
        foreach (var (name, seconds, cpu) in rates)
        {
            Console.WriteLine($"  {name,-40} {instructions / seconds / 1e6,8:F1} / {instructions / cpu / 1e6,8:F1}   " +
                $"QEMU is {seconds / qemuSeconds:F2}x / {cpu / qemuCpu:F2}x faster");
        }
        Console.WriteLine($"  {"qemu-system-x86_64 -accel tcg",-40} {instructions / qemuSeconds / 1e6,8:F1} / {instructions / qemuCpu / 1e6,8:F1}");
    }

    /// <summary>The guest's own lines (those starting with its name) must be the same in every run; intbench's must say PASS.</summary>
    private static void CheckTranscript(string guest, string run, string output, ref string? expected)
    {
        string lines = string.Join("\n", output.Split('\n').Where(l => l.StartsWith(guest, StringComparison.Ordinal)));
        if (guest == "intbench" && !lines.Contains("intbench: PASS", StringComparison.Ordinal))
            throw new InvalidOperationException($"intbench did not pass its self-check under {run}:\n{output}");
        if (expected is null)
            expected = lines;
        else if (lines != expected)
            throw new InvalidOperationException($"{guest}: the transcript under {run} differs:\n{lines}\nexpected:\n{expected}");
    }

    private static (double Seconds, double Cpu, double Instructions, string Output) RunHv(string exe, string kernel, int iterations, string tier)
    {
        var (output, _, seconds, cpu) = Run(exe, ["boot", kernel, "--cmdline", $"iterations={iterations}", "--stats", "--tier", tier]);
        var m = StatsLine().Match(output);
        if (!m.Success)
            throw new InvalidOperationException($"no stats from vmmkit-hv:\n{output}");
        return (seconds, cpu, double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), output);
    }

    private static (double Seconds, double Cpu, string Output) RunQemu(string kernel, int iterations)
    {
        var r = Run("qemu-system-x86_64", ["-accel", "tcg", "-display", "none", "-nodefaults", "-no-reboot", "-m", "64", "-kernel", kernel,
            "-append", $"iterations={iterations}", "-chardev", "stdio,id=dbg", "-device", "isa-debugcon,iobase=0xe9,chardev=dbg",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
        return (r.Seconds, r.Cpu, r.Output);
    }

    /// <summary>Runs a child to its end: output, exit code, wall seconds, and CPU seconds (user + system) it used.</summary>
    private static (string Output, int Code, double Seconds, double Cpu) Run(string file, string[] args)
    {
        double cpuBefore = ChildrenCpuSeconds();
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        var clock = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (stdout + stderr.Result, p.ExitCode, clock.Elapsed.TotalSeconds, ChildrenCpuSeconds() - cpuBefore);
    }

    /// <summary>getrusage(RUSAGE_CHILDREN): user + system seconds of every reaped child so far.</summary>
    private static double ChildrenCpuSeconds()
    {
        var u = new long[18]; // struct rusage: ru_utime, ru_stime (timeval each), then 14 longs
        if (GetRusage(-1, u) != 0)
            return double.NaN;
        return u[0] + u[1] / 1e6 + u[2] + u[3] / 1e6;
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "getrusage")]
    private static extern int GetRusage(int who, [System.Runtime.InteropServices.Out] long[] usage);

    private static double TimeToFirstLine(string file, string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        var clock = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        _ = p.StandardOutput.ReadLine();
        double ms = clock.Elapsed.TotalMilliseconds;
        p.StandardOutput.ReadToEnd();
        p.StandardError.ReadToEnd();
        p.WaitForExit();
        return ms;
    }

    private static void Report(string name, List<double> ms)
    {
        ms.Sort();
        Console.WriteLine($"{name}: process start to first guest console line: median {ms[ms.Count / 2]:F1} ms, min {ms[0]:F1} ms ({ms.Count} runs)");
    }

    [GeneratedRegex(@"stats: instructions (\d+)")]
    private static partial Regex StatsLine();
}
