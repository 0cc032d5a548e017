using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace VmmKit.ReferenceHypervisor.Benchmarks;

/// <summary>
/// Whole-process measurements that BenchmarkDotNet cannot make: time from process start to the
/// guest's first console line (JIT and NativeAOT builds of vmmkit-hv), and the workload guest's
/// instruction rate under vmmkit-hv and under QEMU TCG on the same machine.
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
        return 0;
    }

    public static int CompareWithQemu(string repo, int iterations)
    {
        string aot = Path.Combine(repo, "samples/ReferenceHypervisor/src/bin/Release/net10.0/linux-x64/publish/vmmkit-hv");
        string kernel = Path.Combine(repo, "samples/guests/build/workload.elf");
        if (!File.Exists(aot) || !File.Exists(kernel))
        {
            Console.Error.WriteLine("build first: make -C samples/guests && dotnet publish samples/ReferenceHypervisor/src -r linux-x64 -c Release");
            return 1;
        }

        // vmmkit-hv reports its retired instruction count; the difference between N iterations and 0 is the workload itself.
        var (t0, i0) = RunHv(aot, kernel, 0);
        var (tn, iN) = RunHv(aot, kernel, iterations);
        double instructions = iN - i0;
        double hvSeconds = tn - t0;
        // QEMU runs the same image (it prints through port 0xE9 instead of console_io: a handful of instructions more).
        double q0 = RunQemu(kernel, 0), qn = RunQemu(kernel, iterations);
        double qemuSeconds = qn - q0;
        Console.WriteLine($"workload iterations={iterations}: {instructions:N0} guest instructions");
        Console.WriteLine($"  vmmkit-hv (NativeAOT, interpreter): {hvSeconds:F3} s  {instructions / hvSeconds / 1e6:F1} MIPS");
        Console.WriteLine($"  qemu-system-x86_64 -accel tcg:      {qemuSeconds:F3} s  {instructions / qemuSeconds / 1e6:F1} MIPS");
        return 0;
    }

    private static (double Seconds, double Instructions) RunHv(string exe, string kernel, int iterations)
    {
        var (output, _, seconds) = Run(exe, ["boot", kernel, "--cmdline", $"iterations={iterations}", "--stats"]);
        var m = StatsLine().Match(output);
        if (!m.Success)
            throw new InvalidOperationException($"no stats from vmmkit-hv:\n{output}");
        return (seconds, double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture));
    }

    private static double RunQemu(string kernel, int iterations) =>
        Run("qemu-system-x86_64", ["-accel", "tcg", "-display", "none", "-nodefaults", "-no-reboot", "-m", "64", "-kernel", kernel,
            "-append", $"iterations={iterations}", "-chardev", "stdio,id=dbg", "-device", "isa-debugcon,iobase=0xe9,chardev=dbg",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]).Seconds;

    private static (string Output, int Code, double Seconds) Run(string file, string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        var clock = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (stdout + stderr.Result, p.ExitCode, clock.Elapsed.TotalSeconds);
    }

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
