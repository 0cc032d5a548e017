using System.Diagnostics;

namespace VmmKit.GrantTable.Benchmarks;

/// <summary>
/// Alternates rounds of <see cref="CopyBenchmarks.Memcpy"/>, <see cref="CopyBenchmarks.GrantCopy"/> and
/// <see cref="CopyBenchmarks.ProtocolFloor"/> (and of <see cref="MapBenchmarks.MapUnmapPair"/>) and keeps the fastest
/// round of each: interference from other processes only ever slows a round down, so the minimum is the best estimate
/// of the undisturbed cost. A round walks once through every page (16 times for the cache-hot 64 pages).
/// </summary>
internal static class Interleaved
{
    private const int Rounds = 300;

    public static void Run(TextWriter output)
    {
        foreach (int pages in new[] { 64, 4096 })
        {
            foreach (int length in new[] { 4096, 512 })
            {
                foreach (int batch in new[] { 1, 16 })
                {
                    var copy = new CopyBenchmarks { Length = length, Pages = pages, Batch = batch };
                    copy.Setup();
                    int calls = copy.OpsPerPass / batch * (pages == 64 ? 16 : 1);
                    double memcpy = double.MaxValue, grant = double.MaxValue, floor = double.MaxValue;
                    for (int r = 0; r < Rounds; r++)
                    {
                        memcpy = Math.Min(memcpy, Time(copy.Memcpy, calls));
                        grant = Math.Min(grant, Time(copy.GrantCopy, calls));
                        floor = Math.Min(floor, Time(copy.ProtocolFloor, calls));
                    }

                    copy.Verify();
                    copy.Cleanup();
                    double perOpMemcpy = memcpy / batch, perOpGrant = grant / batch, perOpFloor = floor / batch;
                    output.WriteLine($"{pages,4} pages, {length,4} B x {batch,2}: memcpy {perOpMemcpy,6:F1} ns/op ({length / perOpMemcpy,5:F1} GB/s), GNTTABOP_copy {perOpGrant,6:F1} ns/op ({length / perOpGrant,5:F1} GB/s): {100 * perOpMemcpy / perOpGrant,3:F0}% of memcpy; protocol floor {perOpFloor,6:F1} ns/op ({100 * perOpMemcpy / perOpFloor,3:F0}%)");
                }
            }
        }

        var map = new MapBenchmarks();
        map.Setup();
        double pair = double.MaxValue;
        for (int r = 0; r < Rounds; r++)
        {
            pair = Math.Min(pair, Time(() => map.MapUnmapPair(), 16));
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
