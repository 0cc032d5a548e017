using System.Diagnostics;

namespace VmmKit.GrantTable.Benchmarks;

/// <summary>
/// <see cref="CopyBenchmarks.Memcpy"/> and <see cref="CopyBenchmarks.GrantCopy"/> in turn, three times each, timed by
/// the process's CPU time: time spent waiting for the CPU on a loaded machine does not count.
/// </summary>
internal static class CpuTime
{
    /// <summary>Prints CPU time per operation of the given shape, three rounds.</summary>
    /// <param name="output">Where the figures go.</param>
    /// <param name="length">Bytes per operation.</param>
    /// <param name="batch">Operations per call.</param>
    /// <param name="pages">Pages per side.</param>
    /// <param name="only">"copy", "hypercall" or "memcpy" to time that one alone (a perf profile then shows only it); null for both.</param>
    public static void Run(TextWriter output, int length, int batch, int pages, string? only = null)
    {
        var copy = new CopyBenchmarks { Length = length, Batch = batch, Pages = pages };
        copy.Setup();
        output.Write($"{pages,4} pages, {length,4} B x {batch,2}:");
        for (int round = 0; round < 3; round++)
        {
            if (only is null)
            {
                double memcpy = Measure(copy.Memcpy) / batch, grant = Measure(copy.GrantCopy) / batch;
                output.Write($"  memcpy {memcpy,5:F1} ns/op, copy {grant,5:F1} ns/op ({100 * memcpy / grant:F0}%)");
            }
            else
            {
                Action action = only switch { "memcpy" => copy.Memcpy, "hypercall" => copy.GrantCopyHypercall, _ => copy.GrantCopy };
                output.Write($"  {only} {Measure(action) / batch,5:F1} ns/op");
            }
        }

        copy.Verify();
        copy.Cleanup();
        output.WriteLine();
    }

    private static double Measure(Action action)
    {
        for (int i = 0; i < 20_000; i++)
        {
            action();
        }

        using var process = Process.GetCurrentProcess();
        TimeSpan cpu = process.TotalProcessorTime;
        long calls = 0;
        var wall = Stopwatch.StartNew();
        while (wall.ElapsedMilliseconds < 1000)
        {
            for (int i = 0; i < 1000; i++)
            {
                action();
            }

            calls += 1000;
        }

        process.Refresh();
        return (process.TotalProcessorTime - cpu).TotalNanoseconds / calls;
    }
}
