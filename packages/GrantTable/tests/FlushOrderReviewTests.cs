using System.Runtime.InteropServices;
using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// Review of the order Xen's <c>gnttab_flush_tlb</c> before <c>put_page</c> asks for (2026-12-06), on every path where
/// a page leaves a domain's EPT and may then be freed: when <see cref="GrantTableHost.FlushTranslations"/> runs, the
/// page is gone from the EPT and still allocated; once the call returns, a page whose last reference went is free.
/// Paths: unmap_and_replace, an unmap batch whose status write faults, a live grantee's release, a grantee's death,
/// status frames at set_version v2 to v1, a RAM page replaced by a table frame; and no flush for an unmap that names no
/// host address (the mapping stays). With no hook set, the same calls free the same pages.
/// </summary>
public sealed class FlushOrderReviewTests : IDisposable
{
    private const ulong MapGfn = 0x200;
    private readonly TestMachine _m = new();
    private readonly TestDomain _front; // d1, the granter
    private readonly TestDomain _back;  // d2, the grantee
    private readonly InProcessGrantShare _share;
    private readonly List<(ushort Domain, bool Mapped, bool Allocated)> _flushes = [];
    private (EptTables Ept, ulong Gfn, MachineFrameNumber Frame) _watch;

    public FlushOrderReviewTests()
    {
        _front = _m.AddDomain(1);
        _back = _m.AddDomain(2);
        _share = new InProcessGrantShare(_m.Host, _front.Grant);
        _m.Host.FlushTranslations = d => _flushes.Add((d.Id, Maps(_watch.Ept, _watch.Gfn, _watch.Frame), _m.Memory.TryGetOwner(_watch.Frame, out _)));
    }

    public void Dispose() => _m.Dispose();

    private static bool Maps(EptTables ept, ulong gfn, MachineFrameNumber frame) =>
        ept.TryLookup(new GuestFrameNumber(gfn), out MachineFrameNumber f, out _) && f.Value == frame.Value;

    // d1 grants its frame `gfn` writable to d2, d2 maps it at MapGfn (+ slot), then d1 frees the frame (deferred).
    private (uint Handle, MachineFrameNumber Frame) MapThenFree(int gfn, ulong slot = 0)
    {
        Assert.True(_share.TryGrantForeignAccess(2, (ulong)gfn, readOnly: false, out uint gref));
        GnttabMapGrantRef op = _m.MapGrant(_back, 1, gref, MapGfn + slot);
        Assert.Equal(0, op.Status);
        MachineFrameNumber frame = _front.Ram[gfn];
        _front.Ept.Unmap(new GuestFrameNumber((ulong)gfn).Address, 1);
        Assert.False(_m.Frames.Free(frame)); // mapped: deferred
        _watch = (_back.Ept, MapGfn + slot, frame);
        return (op.Handle, frame);
    }

    private void AssertFlushedThenFreed(ushort domain, MachineFrameNumber frame)
    {
        Assert.Equal([(domain, false, true)], _flushes);
        Assert.False(_m.Memory.TryGetOwner(frame, out _));
        Assert.Equal(0, _m.Frames.PendingFreeCount);
    }

    [Fact]
    public void Unmap_and_replace_flushes_before_the_freed_frame_goes()
    {
        (uint handle, MachineFrameNumber frame) = MapThenFree(4);
        var op = new GnttabUnmapAndReplace { HostAddr = MapGfn << 12, Handle = handle };
        _m.Host.UnmapAndReplace(_back.Grant, ref op);
        Assert.Equal(0, op.Status);
        AssertFlushedThenFreed(2, frame);
    }

    [Fact]
    public void An_unmap_batch_whose_status_write_faults_still_flushes_before_it_completes()
    {
        // The operation lies in the very page it unmaps: its status write finds the page gone (-EFAULT), the unmap stands.
        var dispatcher = new HypercallDispatcher<TestDomain>();
        new GrantTableHypercalls<TestDomain>(_m.Host, new TestResolver()).Register(dispatcher);
        (uint handle, MachineFrameNumber frame) = MapThenFree(4);
        var op = new GnttabUnmapGrantRef { HostAddr = MapGfn << 12, Handle = handle };
        MemoryMarshal.Write(_m.Memory.GetFrame(frame), in op);
        long rc = GrantTableCall.Invoke(dispatcher, _back, (ulong)GrantTableOp.UnmapGrantRef, MapGfn << 12, 1, HypercallAbi.Native64, out _);
        Assert.Equal(XenErrno.EFAULT.Negated(), rc);
        Assert.Equal(0, _back.Grant.MappingCount);
        AssertFlushedThenFreed(2, frame);
    }

    [Fact]
    public void An_unmap_that_names_no_host_address_keeps_the_mapping_and_does_not_flush()
    {
        (uint handle, MachineFrameNumber frame) = MapThenFree(4);
        var op = new GnttabUnmapGrantRef { HostAddr = 0, Handle = handle };
        _m.Host.UnmapGrantRef(_back.Grant, ref op);
        Assert.Equal(0, op.Status);
        Assert.Empty(_flushes);
        Assert.True(Maps(_back.Ept, MapGfn, frame));
        Assert.True(_m.Frames.IsFreePending(frame));
        Assert.Equal(1, _back.Grant.MappingCount);
    }

    [Fact]
    public void A_live_grantees_release_flushes_before_the_freed_frame_goes()
    {
        (_, MachineFrameNumber frame) = MapThenFree(4);
        Assert.Equal(1, _m.Host.ReleaseMappings(_back.Grant));
        AssertFlushedThenFreed(2, frame);
    }

    [Fact]
    public void A_grantees_death_flushes_before_the_freed_frame_goes()
    {
        (_, MachineFrameNumber frame) = MapThenFree(4);
        _m.Host.DestroyDomain(_back.Grant);
        AssertFlushedThenFreed(2, frame);
    }

    [Fact]
    public void Status_frames_leave_the_guest_and_its_vcpus_before_set_version_frees_them()
    {
        var v2 = new GnttabSetVersion { Version = 2 };
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v2));
        Assert.Equal(0, _m.Host.AddToPhysmap(_front.Grant, GrantTableHost.GrantTableStatusIndex, new GuestFrameNumber(0x100)));
        MachineFrameNumber status = _front.Grant.GetStatusFrame(0);
        _watch = (_front.Ept, 0x100, status);
        var v1 = new GnttabSetVersion { Version = 1 };
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v1));
        AssertFlushedThenFreed(1, status);
    }

    [Fact]
    public void A_ram_page_a_table_frame_replaces_leaves_the_vcpus_before_it_is_freed()
    {
        MachineFrameNumber page = _front.Ram[9];
        _watch = (_front.Ept, 9, page);
        Assert.Equal(0, _m.Host.AddToPhysmap(_front.Grant, 0, new GuestFrameNumber(9)));
        AssertFlushedThenFreed(1, page);
        Assert.True(Maps(_front.Ept, 9, _front.Grant.GetSharedFrame(0)));
    }

    [Fact]
    public void With_no_hook_the_same_paths_free_the_same_pages()
    {
        _m.Host.FlushTranslations = null;
        (uint handle, MachineFrameNumber a) = MapThenFree(4, 0);
        (_, MachineFrameNumber b) = MapThenFree(5, 1);
        var op = new GnttabUnmapGrantRef { HostAddr = MapGfn << 12, Handle = handle };
        _m.Host.UnmapGrantRef(_back.Grant, ref op);
        Assert.Equal(0, op.Status);
        Assert.Equal(1, _m.Host.ReleaseMappings(_back.Grant));
        Assert.False(_m.Memory.TryGetOwner(a, out _));
        Assert.False(_m.Memory.TryGetOwner(b, out _));
        Assert.Equal(0, _m.Frames.PendingFreeCount);
        Assert.False(_back.Ept.TryLookup(new GuestFrameNumber(MapGfn), out _, out _));
        Assert.False(_back.Ept.TryLookup(new GuestFrameNumber(MapGfn + 1), out _, out _));
    }
}
