using System.Diagnostics;
using BenchmarkDotNet.Running;
using VmmKit.Vmx.Emulator;
using VmmKit.Vmx.Emulator.Benchmarks;

// `mips [iterations] [tier]`: quick guest-instructions-per-second figures (used for the README table), for the
// interpreter and the translating tier unless one tier is named; anything else goes to BenchmarkDotNet.
if (args.Length > 0 && args[0] == "mips")
{
    uint n = args.Length > 1 ? uint.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 10;
    ExecutionTier[] tiers = args.Length > 2 ? [Enum.Parse<ExecutionTier>(args[2], ignoreCase: true)] : [ExecutionTier.Interpreter, ExecutionTier.Translator];
    byte[]? elf = GuestImages.TryLoadWorkload();
    foreach (ExecutionTier tier in tiers)
    {
        Measure($"{tier}: integer loop", new PvhWorkload(GuestImages.IntegerLoop(20_000_000), "") { Tier = tier });
        Measure($"{tier}: paged walk", new PvhWorkload(GuestImages.PagedWalk(2_000), "") { Tier = tier });
        if (elf == null) Console.WriteLine("workload: samples/guests/build/workload.elf not found (make -C samples/guests)");
        else Measure($"{tier}: workload iterations={n}", new PvhWorkload(elf, $"iterations={n}") { Tier = tier });
    }
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
        Console.WriteLine($"{name}: {w.InstructionsRetired:N0} instructions; wall {sw.Elapsed.TotalMilliseconds:F1} ms = {mips:F1} M instr/s; CPU {cpu.TotalMilliseconds:F1} ms = {cpuMips:F1} M instr/s; translated {100.0 * w.TranslatedInstructions / w.InstructionsRetired:F1}%; exit {exit}; code {w.ExitCode}; output: {w.Output.Replace("\n", " | ")}");
    }
}
