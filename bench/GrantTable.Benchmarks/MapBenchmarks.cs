using BenchmarkDotNet.Attributes;

namespace VmmKit.GrantTable.Benchmarks;

/// <summary>
/// GNTTABOP_map_grant_ref followed by GNTTABOP_unmap_grant_ref of the same grant: EPT update, pins, maptrack, status
/// flags; alone on the host, or beside other domains that do nothing (a host running many guests).
/// </summary>
[MemoryDiagnoser]
public class MapBenchmarks
{
    private const ulong MapGfn = 0x1000;
    private BenchMachine _m = null!;

    /// <summary>Domains on the host besides the frontend and the backend, each with a grant table and nothing else.</summary>
    [Params(0, 1000)]
    public int IdleDomains { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _m = new BenchMachine(idleDomains: IdleDomains);
        MapUnmapPair(); // the first map builds the EPT tables for the slot
    }

    [GlobalCleanup]
    public void Cleanup() => _m.Dispose();

    /// <summary>One map and one unmap.</summary>
    [Benchmark]
    public short MapUnmapPair()
    {
        var map = new GnttabMapGrantRef { HostAddr = MapGfn << 12, Flags = (uint)GrantMapFlags.HostMap, Ref = _m.Refs[3], Dom = 1 };
        _m.Host.MapGrantRef(_m.Back, ref map);
        var unmap = new GnttabUnmapGrantRef { HostAddr = MapGfn << 12, Handle = map.Handle };
        _m.Host.UnmapGrantRef(_m.Back, ref unmap);
        return (short)(map.Status | unmap.Status);
    }
}
