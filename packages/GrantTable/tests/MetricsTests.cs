using System.Diagnostics.Metrics;
using VmmKit.TestSupport;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using VmmKit.Ept;
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

    [Fact]
    public void A_copy_entry_that_ran_is_counted_even_when_its_status_cannot_be_written()
    {
        // gnttab_copy runs the entry, then __copy_field_to_guest of its status fails (-EFAULT): the entry was
        // processed, and the meter counts every entry processed (GrantTableMetrics), on this fault path too.
        using var counts = new MeterCapture(GrantTableMetrics.MeterName);
        Put(Buffer, new GnttabCopy
        {
            Source = new() { Gmfn = 3, DomId = DomainId.Self },
            Dest = new() { Gmfn = 4, DomId = DomainId.Self },
            Len = 8,
            Status = 99,
        });
        _back.Ept.Protect(new GuestPhysicalAddress(Buffer), 1, EptAccess.Read); // readable, not writable

        Assert.Equal(XenErrno.EFAULT.Negated(), Call(GrantTableOp.Copy, Buffer, 1));

        lock (counts)
        {
            Assert.Equal(1, counts["vmmkit.granttable.copies status=okay"]);
            Assert.Single(counts);
        }
    }

    [Fact]
    public void Compat_copy_entries_that_fail_are_counted_as_errors()
    {
        // The 32-bit ABI's gnttab_copy (compat_grant_table_op) processes the same entries: one that fails (a length
        // past the page, GNTST_bad_copy_arg) is counted with status=error, as in the native ABI.
        using var counts = new MeterCapture(GrantTableMetrics.MeterName);
        var compat = new CompatGnttabCopy
        {
            Source = new() { Gmfn = 3, DomId = DomainId.Self },
            Dest = new() { Gmfn = 4, DomId = DomainId.Self },
            Len = 5000,
        };
        Put(Buffer, compat);
        Put(Buffer + (ulong)Unsafe.SizeOf<CompatGnttabCopy>(), compat with { Len = 8 });
        Assert.Equal(0, Call(GrantTableOp.Copy, Buffer, 2, HypercallAbi.Compat32));

        lock (counts)
        {
            Assert.Equal(1, counts["vmmkit.granttable.copies status=error"]);
            Assert.Equal(1, counts["vmmkit.granttable.copies status=okay"]);
            Assert.Equal(2, counts.Count);
        }
    }
}
