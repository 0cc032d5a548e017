using System.Diagnostics;

namespace VmmKit.GrantTable.Benchmarks;

/// <summary>
/// Alternates rounds of <see cref="CopyBenchmarks.Memcpy"/>, <see cref="CopyBenchmarks.HostCopier"/>,
/// <see cref="CopyBenchmarks.GrantCopy"/>, <see cref="CopyBenchmarks.ProtocolFloor"/>, <see cref="CopyBenchmarks.ProtocolFloorWindow"/> and
/// <see cref="CopyBenchmarks.GrantCopyHypercall"/> (and of <see cref="MapBenchmarks.MapUnmapPair"/>) and keeps the fastest
/// round of each: interference from other processes only ever slows a round down, so the minimum is the best estimate
/// of the undisturbed cost. A round walks once through every page (16 times for the cache-hot 64 pages). With several
/// runs, each shape's ratios are summarised at the end as median and range over the runs.
/// </summary>
internal static class Interleaved
{
    private const int Rounds = 300;
    private const int CrowdedDomains = 1000; // the other map + unmap case: a host running many guests

    private static readonly (int Pages, int Length, int Batch)[] Shapes =
    [
        (64, 4096, 1), (64, 4096, 16), (64, 512, 1), (64, 512, 16),
        (4096, 4096, 1), (4096, 4096, 16), (4096, 512, 1), (4096, 512, 16),
    ];

    public static void Run(TextWriter output, int runs, bool intoGrant)
    {
        var copyRatio = new double[Shapes.Length][];
        var floorRatio = new double[Shapes.Length][];
        var windowRatio = new double[Shapes.Length][];
        var memcpyNs = new double[Shapes.Length][];
        var copyNs = new double[Shapes.Length][];
        var hypercallRatio = new double[Shapes.Length][];
        var copierRatio = new double[Shapes.Length][];
        for (int s = 0; s < Shapes.Length; s++)
        {
            copyRatio[s] = new double[runs];
            floorRatio[s] = new double[runs];
            windowRatio[s] = new double[runs];
            memcpyNs[s] = new double[runs];
            copyNs[s] = new double[runs];
            hypercallRatio[s] = new double[runs];
            copierRatio[s] = new double[runs];
        }

        var pairs = new double[runs];
        var crowdedPairs = new double[runs];
        for (int run = 0; run < runs; run++)
        {
            for (int s = 0; s < Shapes.Length; s++)
            {
                (int pages, int length, int batch) = Shapes[s];
                var copy = new CopyBenchmarks { Length = length, Pages = pages, Batch = batch, IntoGrant = intoGrant };
                copy.Setup();
                int calls = copy.OpsPerPass / batch * (pages == 64 ? 16 : 1);
                double memcpy = double.MaxValue, grant = double.MaxValue, floor = double.MaxValue, window = double.MaxValue,
                    hypercall = double.MaxValue, copier = double.MaxValue;
                for (int r = 0; r < Rounds; r++)
                {
                    memcpy = Math.Min(memcpy, Time(copy.Memcpy, calls));
                    copier = Math.Min(copier, Time(copy.HostCopier, calls));
                    grant = Math.Min(grant, Time(copy.GrantCopy, calls));
                    window = Math.Min(window, Time(copy.ProtocolFloorWindow, calls));
                    floor = Math.Min(floor, Time(copy.ProtocolFloor, calls));
                    hypercall = Math.Min(hypercall, Time(copy.GrantCopyHypercall, calls));
                }

                copy.Verify();
                copy.Cleanup();
                double perOpMemcpy = memcpy / batch, perOpGrant = grant / batch, perOpFloor = floor / batch;
                memcpyNs[s][run] = perOpMemcpy;
                copyNs[s][run] = perOpGrant;
                copyRatio[s][run] = 100 * perOpMemcpy / perOpGrant;
                floorRatio[s][run] = 100 * perOpMemcpy / perOpFloor;
                windowRatio[s][run] = 100 * memcpy / window;
                hypercallRatio[s][run] = 100 * memcpy / hypercall;
                copierRatio[s][run] = 100 * memcpy / copier;
                output.WriteLine($"{Name(s)}: memcpy {perOpMemcpy,6:F1} ns/op ({length / perOpMemcpy,5:F1} GB/s), GNTTABOP_copy {perOpGrant,6:F1} ns/op ({length / perOpGrant,5:F1} GB/s): {copyRatio[s][run],3:F0}% of memcpy; protocol floor {perOpFloor,6:F1} ns/op ({floorRatio[s][run],3:F0}%), in window order {windowRatio[s][run],3:F0}%; as a hypercall {hypercallRatio[s][run],3:F0}%; the host's copier alone {copierRatio[s][run],3:F0}%");
            }

            pairs[run] = MapUnmap(0);
            crowdedPairs[run] = MapUnmap(CrowdedDomains);
            output.WriteLine($"map+unmap: {pairs[run]:F0} ns/pair ({1e9 / pairs[run]:F0} pairs/s); beside {CrowdedDomains} idle domains {crowdedPairs[run]:F0} ns/pair");
        }

        if (runs > 1)
        {
            output.WriteLine($"over {runs} runs, median (min-max) per operation:");
            for (int s = 0; s < Shapes.Length; s++)
            {
                output.WriteLine($"{Name(s)}: memcpy {Median(memcpyNs[s]),6:F1} ns, copy {Median(copyNs[s]),6:F1} ns, copy/memcpy {Summary(copyRatio[s])}, floor/memcpy {Summary(floorRatio[s])}, window-order floor/memcpy {Summary(windowRatio[s])}, hypercall/memcpy {Summary(hypercallRatio[s])}, copier/memcpy {Summary(copierRatio[s])}");
            }

            output.WriteLine($"map+unmap: {Median(pairs):F0} ns/pair ({pairs.Min():F0}-{pairs.Max():F0}); beside {CrowdedDomains} idle domains {Median(crowdedPairs):F0} ns/pair ({crowdedPairs.Min():F0}-{crowdedPairs.Max():F0})");
        }
    }

    private static string Name(int s) => $"{Shapes[s].Pages,4} pages, {Shapes[s].Length,4} B x {Shapes[s].Batch,2}";

    private static string Summary(double[] percent) => $"{Median(percent),3:F0}% ({percent.Min():F0}-{percent.Max():F0})";

    private static double Median(double[] values)
    {
        double[] sorted = [.. values.Order()];
        int n = sorted.Length;
        return n % 2 == 1 ? sorted[n / 2] : (sorted[(n / 2) - 1] + sorted[n / 2]) / 2;
    }

    // A pair takes well under a microsecond once optimized, so the rounds alone (some 5,000 pairs) can finish before
    // tiered compilation replaces the first, unoptimized code, and the fastest round then measures that code (1-3 µs
    // instead of 0.4). Half a second of pairs first lets the optimized code be in place before any round is timed.
    // Map + unmap pairs, ns per pair (the fastest round), with `idleDomains` other domains on the host.
    private static double MapUnmap(int idleDomains)
    {
        var map = new MapBenchmarks { IdleDomains = idleDomains };
        map.Setup();
        double pair = double.MaxValue;
        WarmUp(() => map.MapUnmapPair());
        for (int r = 0; r < Rounds; r++)
        {
            pair = Math.Min(pair, Time(() => map.MapUnmapPair(), 16));
        }

        map.Cleanup();
        return pair;
    }

    private static void WarmUp(Action action)
    {
        long start = Stopwatch.GetTimestamp();
        while (Stopwatch.GetElapsedTime(start).TotalMilliseconds < 500)
        {
            action();
        }
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
