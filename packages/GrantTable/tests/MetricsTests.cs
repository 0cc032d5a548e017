using System.Diagnostics.Metrics;
using VmmKit.TestSupport;
using System.Runtime.InteropServices;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>The meter is process-wide: these tests run alone so that no other test's hypercalls add measurements.</summary>
[CollectionDefinition(nameof(GrantTableMeterCollection), DisableParallelization = true)]
public sealed class GrantTableMeterCollection;

/// <summary>The <c>VmmKit.GrantTable</c> meter's instruments, as the package README lists them, seen by a <see cref="MeterListener"/>.</summary>
[Collection(nameof(GrantTableMeterCollection))]
public sealed class MetricsTests : IDisposable
{
    private const ulong Buffer = 20UL << 12;
    private readonly TestMachine _m = new();
    private readonly TestDomain _front;
    private readonly TestDomain _back;
    private readonly HypercallDispatcher<TestDomain> _dispatcher = new();
    private readonly InProcessGrantShare _share;

    public MetricsTests()
    {
        _front = _m.AddDomain(1);
        _back = _m.AddDomain(2);
        _share = new InProcessGrantShare(_m.Host, _front.Grant);
        new GrantTableHypercalls<TestDomain>(_m.Host, new TestResolver()).Register(_dispatcher);
    }

    public void Dispose() => _m.Dispose();

    private long Call(GrantTableOp cmd, ulong uop, ulong count, HypercallAbi abi = HypercallAbi.Native64)
    {
        HypercallArguments args = default;
        args[0] = (ulong)cmd;
        args[1] = uop;
        args[2] = count;
        HypercallCall<TestDomain> call = _dispatcher.CreateCall(_back, (uint)HypercallNumber.GrantTableOp, abi, _back.Virtual, args);
        return _dispatcher.Invoke(ref call);
    }

    private void Put<T>(ulong gpa, T value) where T : unmanaged =>
        Assert.True(_back.TryWrite(gpa, MemoryMarshal.AsBytes(new ReadOnlySpan<T>(in value))));

    [Fact]
    public void The_instrument_names_are_the_documented_ones()
    {
        Assert.Equal("VmmKit.GrantTable", GrantTableMetrics.MeterName);
        Assert.Equal("vmmkit.granttable.copies", GrantTableMetrics.Copies);
        Assert.Equal("vmmkit.granttable.maps", GrantTableMetrics.Maps);
        MeterCapture.AssertDocumented("GrantTable", GrantTableMetrics.MeterName, GrantTableMetrics.Copies, GrantTableMetrics.Maps);
    }

    [Fact]
    public void Copy_and_map_entries_are_counted_by_status_in_both_abis()
    {
        using var counts = new MeterCapture(GrantTableMetrics.MeterName);

        Assert.True(_share.TryGrantForeignAccess(2, 5, false, out uint gref));
        Put(Buffer, new GnttabMapGrantRef { HostAddr = 0x1000UL << 12, Flags = (uint)GrantMapFlags.HostMap, Ref = gref, Dom = 1 });
        Assert.Equal(0, Call(GrantTableOp.MapGrantRef, Buffer, 1));
        Put(Buffer, new GnttabMapGrantRef { HostAddr = 0x1001UL << 12, Flags = (uint)GrantMapFlags.HostMap, Ref = 400, Dom = 1 });
        Assert.Equal(0, Call(GrantTableOp.MapGrantRef, Buffer, 1)); // an unused ref: the entry fails, the call succeeds

        var copy = new GnttabCopy
        {
            Source = new() { Ref = gref, DomId = 1 },
            Dest = new() { Gmfn = 7, DomId = DomainId.Self, Offset = 8 },
            Len = 16,
            Flags = (ushort)GrantCopyFlags.SourceGref,
        };
        Put(Buffer, copy);
        Put(Buffer + 40, copy with { Len = 5000 });
        Assert.Equal(0, Call(GrantTableOp.Copy, Buffer, 2));
        var compat = new CompatGnttabCopy
        {
            Source = new() { Ref = gref, DomId = 1 },
            Dest = new() { Gmfn = 9, DomId = DomainId.Self },
            Len = 4,
            Flags = (ushort)GrantCopyFlags.SourceGref,
        };
        Put(Buffer, compat);
        Assert.Equal(0, Call(GrantTableOp.Copy, Buffer, 1, HypercallAbi.Compat32));

        lock (counts)
        {
            Assert.Equal(1, counts["vmmkit.granttable.maps status=okay"]);
            Assert.Equal(1, counts["vmmkit.granttable.maps status=error"]);
            Assert.Equal(2, counts["vmmkit.granttable.copies status=okay"]);
            Assert.Equal(1, counts["vmmkit.granttable.copies status=error"]);
            Assert.Equal(4, counts.Count);
        }
    }
}
