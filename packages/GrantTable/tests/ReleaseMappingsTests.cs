using VmmKit.Ept;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// <see cref="GrantTableHost.ReleaseMappings"/>: a live grantee's maptrack walked as Xen's gnttab_release_mappings
/// walks a dying one's (and as Linux's gntdev unmaps a closed file's grants), so that whoever reattaches to the
/// domain finds no mapping it cannot name.
/// </summary>
public sealed class ReleaseMappingsTests : IDisposable
{
    private const ulong Slot = 0x1000;
    private readonly TestMachine _m = new();
    private readonly TestDomain _front;
    private readonly TestDomain _other;
    private readonly TestDomain _back;
    private readonly InProcessGrantShare _frontShare;
    private readonly InProcessGrantShare _otherShare;

    public ReleaseMappingsTests()
    {
        _front = _m.AddDomain(1);
        _other = _m.AddDomain(3);
        _back = _m.AddDomain(2);
        _frontShare = new InProcessGrantShare(_m.Host, _front.Grant);
        _otherShare = new InProcessGrantShare(_m.Host, _other.Grant);
    }

    public void Dispose() => _m.Dispose();

    private unsafe ushort FlagsOf(TestDomain granter, uint gref) =>
        ((GrantEntryV1*)_m.Memory.GetFramePointer(granter.Grant.GetSharedFrame(0)) + gref)->Flags;

    [Fact]
    public void Every_mapping_of_the_grantee_goes_and_the_granters_see_their_grants_free()
    {
        Assert.True(_frontShare.TryGrantForeignAccess(2, 5, readOnly: false, out uint rw));
        Assert.True(_frontShare.TryGrantForeignAccess(2, 6, readOnly: true, out uint ro));
        Assert.True(_otherShare.TryGrantForeignAccess(2, 7, readOnly: false, out uint third));
        _front.RamPage(5).Fill(0x5A);
        Assert.Equal(0, _m.MapGrant(_back, 1, rw, Slot).Status);
        Assert.Equal(0, _m.MapGrant(_back, 1, rw, Slot + 1, readOnly: true).Status);   // the same grant twice
        Assert.Equal(0, _m.MapGrant(_back, 1, ro, Slot + 2, readOnly: true).Status);
        Assert.Equal(0, _m.MapGrant(_back, 3, third, Slot + 3).Status);
        Assert.Equal(4, _back.Grant.MappingCount);
        Assert.Equal((ushort)(GrantEntryFlags.PermitAccess | GrantEntryFlags.Reading | GrantEntryFlags.Writing), FlagsOf(_front, rw));
        Assert.Equal(2, _m.Frames.ReferenceCount(_front.Ram[5]));

        Assert.Equal(4, _m.Host.ReleaseMappings(_back.Grant));

        Assert.Equal(0, _back.Grant.MappingCount);
        foreach (ulong gfn in (ulong[])[Slot, Slot + 1, Slot + 2, Slot + 3])
            Assert.False(_back.TryRead(gfn << 12, new byte[1]), $"gfn 0x{gfn:x} is still mapped");
        Assert.Equal((0u, 0u, 0u), (_front.Grant.GetPinCount(rw), _front.Grant.GetPinCount(ro), _other.Grant.GetPinCount(third)));
        Assert.Equal((ushort)GrantEntryFlags.PermitAccess, FlagsOf(_front, rw));   // GTF_reading and GTF_writing cleared
        Assert.Equal(0, _m.Frames.ReferenceCount(_front.Ram[5]));
        Assert.False(_frontShare.IsForeignAccessInUse(rw));
        Assert.True(_frontShare.EndForeignAccess(rw));
        Assert.True(_otherShare.EndForeignAccess(third));
        Assert.Equal(0, _m.Host.ReleaseMappings(_back.Grant));   // nothing left
    }

    [Fact]
    public void The_released_slots_and_handles_can_be_used_again_and_old_handles_are_bad()
    {
        Assert.True(_frontShare.TryGrantForeignAccess(2, 5, readOnly: false, out uint gref));
        GnttabMapGrantRef first = _m.MapGrant(_back, 1, gref, Slot);
        Assert.Equal(0, first.Status);
        Assert.Equal(1, _m.Host.ReleaseMappings(_back.Grant));

        // The slot a previous owner of the domain's mappings used is free for the next one (what a reattaching Dom0 needs).
        _front.RamPage(5).Fill(0x33);
        GnttabMapGrantRef again = _m.MapGrant(_back, 1, gref, Slot);
        Assert.Equal(0, again.Status);
        var b = new byte[1];
        Assert.True(_back.TryRead(Slot << 12, b));
        Assert.Equal(0x33, b[0]);

        // An old handle that is not in use any more is refused (a stale unmap cannot undo the new mapping).
        var stale = new GnttabUnmapGrantRef { HostAddr = (Slot + 5) << 12, Handle = first.Handle + 1 };
        _m.Host.UnmapGrantRef(_back.Grant, ref stale);
        Assert.Equal((short)GrantStatus.BadHandle, stale.Status);
        var unmap = new GnttabUnmapGrantRef { HostAddr = Slot << 12, Handle = again.Handle };
        _m.Host.UnmapGrantRef(_back.Grant, ref unmap);
        Assert.Equal(0, unmap.Status);
        Assert.Equal(0u, _front.Grant.GetPinCount(gref));
    }

    [Fact]
    public void A_frame_of_a_granter_that_died_meanwhile_is_freed_at_the_release()
    {
        Assert.True(_frontShare.TryGrantForeignAccess(2, 5, readOnly: false, out uint gref));
        Assert.Equal(0, _m.MapGrant(_back, 1, gref, Slot).Status);
        MachineFrameNumber frame = _front.Ram[5];
        _m.Kill(_front);
        Assert.True(_m.Frames.IsFreePending(frame));

        Assert.Equal(1, _m.Host.ReleaseMappings(_back.Grant));
        Assert.False(_m.Frames.IsFreePending(frame));
        Assert.False(_m.Memory.TryGetOwner(frame, out _));
    }

    [Fact]
    public void Other_grantees_keep_their_mappings_and_a_destroyed_grantee_has_none()
    {
        Assert.True(_frontShare.TryGrantForeignAccess(2, 5, readOnly: true, out uint toBack));
        Assert.True(_frontShare.TryGrantForeignAccess(3, 6, readOnly: true, out uint toOther));
        Assert.Equal(0, _m.MapGrant(_back, 1, toBack, Slot, readOnly: true).Status);
        Assert.Equal(0, _m.MapGrant(_other, 1, toOther, Slot, readOnly: true).Status);

        Assert.Equal(1, _m.Host.ReleaseMappings(_back.Grant));
        Assert.Equal(1, _other.Grant.MappingCount);
        Assert.True(_other.TryRead(Slot << 12, new byte[1]));
        Assert.NotEqual(0u, _front.Grant.GetPinCount(toOther));

        _m.Kill(_other);
        Assert.Equal(0, _m.Host.ReleaseMappings(_other.Grant));
        Assert.Equal(0u, _front.Grant.GetPinCount(toOther));
        Assert.Throws<ArgumentNullException>(() => _m.Host.ReleaseMappings(null!));
    }
}
