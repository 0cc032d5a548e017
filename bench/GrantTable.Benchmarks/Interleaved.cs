using System.Diagnostics;

namespace VmmKit.GrantTable.Benchmarks;

/// <summary>
/// Alternates rounds of <see cref="CopyBenchmarks.Memcpy"/>, <see cref="CopyBenchmarks.GrantCopy"/> and
/// <see cref="MapBenchmarks.MapUnmapPair"/> and keeps the fastest round of each: interference from other processes
/// only ever slows a round down, so the minimum is the best estimate of the undisturbed cost.
/// </summary>
internal static class Interleaved
{
    private const int Rounds = 200;
    private const int BatchesPerRound = 16;

    public static void Run(TextWriter output)
    {
        foreach (int pages in new[] { 64, 4096 })
        {
            foreach (int length in new[] { 4096, 1024 })
            {
                var copy = new CopyBenchmarks { Length = length, Pages = pages };
                copy.Setup();
                double memcpy = double.MaxValue, grant = double.MaxValue;
                for (int r = 0; r < Rounds; r++)
                {
                    memcpy = Math.Min(memcpy, Time(copy.Memcpy, pages == 64 ? BatchesPerRound : 1));
                    grant = Math.Min(grant, Time(copy.GrantCopy, pages == 64 ? BatchesPerRound : 1));
                }

                copy.Cleanup();
                double perOpMemcpy = memcpy / pages, perOpGrant = grant / pages;
                output.WriteLine($"{pages,4} pages x {length,4} bytes: memcpy {perOpMemcpy,6:F1} ns/op ({length / perOpMemcpy,5:F1} GB/s), GNTTABOP_copy {perOpGrant,6:F1} ns/op ({length / perOpGrant,5:F1} GB/s): {100 * perOpMemcpy / perOpGrant:F0}% of memcpy");
            }
        }

        var map = new MapBenchmarks();
        map.Setup();
        double pair = double.MaxValue;
        for (int r = 0; r < Rounds; r++)
        {
            pair = Math.Min(pair, Time(() => map.MapUnmapPair(), BatchesPerRound));
        }

        map.Cleanup();
        output.WriteLine($"map+unmap: {pair:F0} ns/pair ({1e9 / pair:F0} pairs/s)");
    }

    private static double Time(Action action, int repeat)
    {
        long start = Stopwatch.GetTimestamp();
        for (int i = 0; i < repeat; i++)
        {
            action();
        }

        return Stopwatch.GetElapsedTime(start).TotalNanoseconds / repeat;
    }
}
