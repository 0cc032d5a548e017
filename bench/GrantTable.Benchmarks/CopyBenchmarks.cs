using BenchmarkDotNet.Attributes;
using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Benchmarks;

/// <summary>
/// GNTTABOP_copy as a network or block backend uses it: a batch of copies from the frontend's granted pages into
/// the backend's own frames, next to a plain memcpy of the same bytes between the same frames (the baseline; goal:
/// the copy reaches at least 80% of its throughput).
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

    [GlobalSetup]
    public void Setup()
    {
        _m = new BenchMachine();
        _ops = new GnttabCopy[BenchMachine.Pages];
        _src = new byte*[BenchMachine.Pages];
        _dst = new byte*[BenchMachine.Pages];
        for (int i = 0; i < BenchMachine.Pages; i++)
        {
            _ops[i] = new GnttabCopy
            {
                Source = new GnttabCopyPtr { Ref = _m.Refs[i], DomId = 1 },
                Dest = new GnttabCopyPtr { Gmfn = (ulong)((i + 7) % BenchMachine.Pages), DomId = DomainId.Self },
                Len = (ushort)Length,
                Flags = (ushort)GrantCopyFlags.SourceGref,
            };
            _src[i] = _m.Memory.GetFramePointer(_m.FrontRam[i]);
            _dst[i] = _m.Memory.GetFramePointer(_m.BackRam[(i + 7) % BenchMachine.Pages]);
        }
    }

    [GlobalCleanup]
    public void Cleanup() => _m.Dispose();

    /// <summary>The same bytes between the same frames with a plain memcpy.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = BenchMachine.Pages)]
    public void Memcpy()
    {
        for (int i = 0; i < BenchMachine.Pages; i++)
        {
            Buffer.MemoryCopy(_src[i], _dst[i], Length, Length);
        }
    }

    /// <summary>One batch of 64 GNTTABOP_copy operations (gref source, DOMID_SELF frame destination).</summary>
    [Benchmark(OperationsPerInvoke = BenchMachine.Pages)]
    public void GrantCopy() => _m.Host.Copy(_m.Back, _ops);
}
