using System.Diagnostics;
using BenchmarkDotNet.Running;
using VmmKit.Vmx.Emulator.Benchmarks;

// `mips [iterations]`: quick guest-instructions-per-second figures (used for the README table);
// anything else goes to BenchmarkDotNet.
if (args.Length > 0 && args[0] == "mips")
{
    uint n = args.Length > 1 ? uint.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 10;
    Measure("integer loop", new PvhWorkload(GuestImages.IntegerLoop(20_000_000), ""));
    Measure("paged walk", new PvhWorkload(GuestImages.PagedWalk(2_000), ""));
    byte[]? elf = GuestImages.TryLoadWorkload();
    if (elf == null) Console.WriteLine("workload: samples/guests/build/workload.elf not found (make -C samples/guests)");
    else Measure($"workload iterations={n}", new PvhWorkload(elf, $"iterations={n}"));
    return;
}
BenchmarkSwitcher.FromAssembly(typeof(EmulatorBenchmarks).Assembly).Run(args);

static void Measure(string name, PvhWorkload w)
{
    using (w)
    {
        w.Run(); // warm-up (JIT, decoded blocks are per processor and rebuilt by Reset)
        w.Reset();
        // CPU time as well as wall time: on a shared machine the wall clock includes time the thread was not running.
        TimeSpan cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
        var sw = Stopwatch.StartNew();
        var exit = w.Run();
        sw.Stop();
        TimeSpan cpu = Process.GetCurrentProcess().TotalProcessorTime - cpu0;
        double mips = w.InstructionsRetired / sw.Elapsed.TotalSeconds / 1e6;
        double cpuMips = w.InstructionsRetired / cpu.TotalSeconds / 1e6;
        Console.WriteLine($"{name}: {w.InstructionsRetired:N0} instructions; wall {sw.Elapsed.TotalMilliseconds:F1} ms = {mips:F1} M instr/s; CPU {cpu.TotalMilliseconds:F1} ms = {cpuMips:F1} M instr/s; exit {exit}; code {w.ExitCode}; output: {w.Output.Replace("\n", " | ")}");
    }
}
