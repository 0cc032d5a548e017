using BenchmarkDotNet.Attributes;
using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Benchmarks;

/// <summary>
/// GNTTABOP_copy as a network or block backend uses it: a batch of copies from the frontend's granted pages into
/// the backend's own frames, next to a plain memcpy of the same bytes between the same frames (the baseline; goal:
/// the copy reaches at least 80% of its throughput). <see cref="Pages"/> = 64 keeps both sides in the L2 cache (the
/// copy's fixed cost shows most); 4096 pages (16 MiB per side) makes each copy touch memory not recently used, as a
/// backend copying freshly written guest buffers does.
/// </summary>
[MemoryDiagnoser]
public unsafe class CopyBenchmarks
{
    private BenchMachine _m = null!;
    private GnttabCopy[] _ops = null!;
    private byte*[] _src = null!;
    private byte*[] _dst = null!;

    /// <summary>Bytes per copy operation.</summary>
    [Params(4096, 1024)]
    public int Length { get; set; }

    /// <summary>Pages per side, copied once each per invocation.</summary>
    [Params(64, 4096)]
    public int Pages { get; set; } = BenchMachine.Pages;

    [GlobalSetup]
    public void Setup()
    {
        _m = new BenchMachine(Pages);
        _ops = new GnttabCopy[Pages];
        _src = new byte*[Pages];
        _dst = new byte*[Pages];
        for (int i = 0; i < Pages; i++)
        {
            _ops[i] = new GnttabCopy
            {
                Source = new GnttabCopyPtr { Ref = _m.Refs[i], DomId = 1 },
                Dest = new GnttabCopyPtr { Gmfn = (ulong)((i + 7) % Pages), DomId = DomainId.Self },
                Len = (ushort)Length,
                Flags = (ushort)GrantCopyFlags.SourceGref,
            };
            _src[i] = _m.Memory.GetFramePointer(_m.FrontRam[i]);
            _dst[i] = _m.Memory.GetFramePointer(_m.BackRam[(i + 7) % Pages]);
        }
    }

    [GlobalCleanup]
    public void Cleanup() => _m.Dispose();

    /// <summary>The same bytes between the same frames with a plain memcpy (times are per batch of <see cref="Pages"/> copies).</summary>
    [Benchmark(Baseline = true)]
    public void Memcpy()
    {
        for (int i = 0; i < Pages; i++)
        {
            Buffer.MemoryCopy(_src[i], _dst[i], Length, Length);
        }
    }

    /// <summary>One batch of <see cref="Pages"/> GNTTABOP_copy operations (gref source, DOMID_SELF frame destination).</summary>
    [Benchmark]
    public void GrantCopy() => _m.Host.Copy(_m.Back, _ops);
}
