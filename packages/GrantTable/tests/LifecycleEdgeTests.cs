using System.Runtime.InteropServices;
using VmmKit.Ept;
using VmmKit.Hypercall;
using static VmmKit.GrantTable.Tests.GuestValues;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// The edges of a domain's life and of each operation's arguments: death on either side and domid reuse, set_version
/// and the table queries, swap and unmap_and_replace arguments, physmap interplay and the hypercall layer (counts,
/// compat), each against Xen 4.17's grant_table.c,
/// compat/grant_table.c and memory.c. Grant entries are written directly into the granter's table frames, as a guest
/// kernel writes them.
/// </summary>
public sealed class LifecycleEdgeTests : IDisposable
{
    private const ulong Buffer = 20UL << 12;   // guest-physical buffer in the caller's RAM (paging off)
    private const ulong Slot = 0x1000;         // where grantees map grants
    private readonly TestMachine _m = new();
    private readonly TestDomain _front;
    private readonly TestDomain _back;
    private readonly HypercallDispatcher<TestDomain> _dispatcher = new();

    public LifecycleEdgeTests()
    {
        _front = _m.AddDomain(1);
        _back = _m.AddDomain(2);
        new GrantTableHypercalls<TestDomain>(_m.Host, new TestResolver()).Register(_dispatcher);
    }

    public void Dispose() => _m.Dispose();

    // ---------------------------------------------------------------- helpers

    private unsafe GrantEntryV1* V1(TestDomain d, uint gref) =>
        (GrantEntryV1*)_m.Memory.GetFramePointer(d.Grant.GetSharedFrame((int)(gref / GrantEntryV1.PerFrame))) + (gref % GrantEntryV1.PerFrame);

    private unsafe GrantEntryV2* V2(TestDomain d, uint gref) =>
        (GrantEntryV2*)_m.Memory.GetFramePointer(d.Grant.GetSharedFrame((int)(gref / GrantEntryV2.PerFrame))) + (gref % GrantEntryV2.PerFrame);

    private unsafe ushort StatusV2(TestDomain d, uint gref) =>
        ((ushort*)_m.Memory.GetFramePointer(d.Grant.GetStatusFrame((int)(gref / GrantEntryV2.StatusPerFrame))))[gref % GrantEntryV2.StatusPerFrame];

    /// <summary>Writes a permit_access entry the way Linux's gnttab_update_entry_v1/v2 does (flags last).</summary>
    private unsafe void Grant(TestDomain granter, uint gref, ushort to, ulong gfn, bool readOnly = false)
    {
        ushort flags = (ushort)(GrantEntryFlags.PermitAccess | (readOnly ? GrantEntryFlags.ReadOnly : 0));
        if (granter.Grant.Version == 1)
        {
            GrantEntryV1* e = V1(granter, gref);
            e->Frame = (uint)gfn;
            e->DomId = to;
            Volatile.Write(ref e->Flags, flags);
        }
        else
        {
            GrantEntryV2* e = V2(granter, gref);
            e->Frame = gfn;
            e->DomId = to;
            Volatile.Write(ref e->Flags, flags);
        }
    }

    private short Unmap(TestDomain by, uint handle, ulong gfn, ulong devBusAddr = 0)
    {
        var op = new GnttabUnmapGrantRef { HostAddr = gfn << 12, DevBusAddr = devBusAddr, Handle = handle };
        _m.Host.UnmapGrantRef(by.Grant, ref op);
        return op.Status;
    }

    private short Replace(TestDomain by, uint handle, ulong hostAddr, ulong newAddr)
    {
        var op = new GnttabUnmapAndReplace { HostAddr = hostAddr, NewAddr = newAddr, Handle = handle };
        _m.Host.UnmapAndReplace(by.Grant, ref op);
        return op.Status;
    }

    private short Swap(TestDomain d, uint a, uint b)
    {
        var op = new GnttabSwapGrantRef { RefA = a, RefB = b, Status = 99 };
        _m.Host.SwapGrantRef(d.Grant, ref op);
        return op.Status;
    }

    private long SetVersion(TestDomain d, uint version)
    {
        var op = new GnttabSetVersion { Version = version };
        return _m.Host.SetVersion(d.Grant, ref op);
    }

    private static byte ReadByte(TestDomain d, ulong gpa)
    {
        var b = new byte[1];
        Assert.True(d.TryRead(gpa, b), $"gpa 0x{gpa:x} is not readable");
        return b[0];
    }

    private long Call(TestDomain caller, ulong cmd, ulong uop, ulong count, HypercallAbi abi = HypercallAbi.Native64)
    {
        HypercallArguments args = default;
        args[0] = cmd;
        args[1] = uop;
        args[2] = count;
        HypercallCall<TestDomain> call = _dispatcher.CreateCall(caller, (uint)HypercallNumber.GrantTableOp, abi, caller.Virtual, args);
        return _dispatcher.Invoke(ref call);
    }

    // ---------------------------------------------------------------- 1. domain lifecycle

    /// <summary>
    /// DestroyDomain frees the table's frames and leaves the table with none (Xen's grant_table_destroy frees them with
    /// the table): a destroyed domain reports no shared or status frame and no entry, so nothing reaches a freed frame
    /// through its entry count.
    /// </summary>
    [Fact]
    public void A_destroyed_domain_has_no_table_frame_and_no_entry()
    {
        var v = new GnttabSetVersion { Version = 2 };
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));
        Assert.True(_front.Grant.EntryCount > 0);
        _m.Kill(_front);

        Assert.Equal(0, _front.Grant.SharedFrameCount);
        Assert.Equal(0, _front.Grant.StatusFrameCount);
        Assert.Equal(0, _front.Grant.EntryCount);
        Assert.Throws<ArgumentOutOfRangeException>(() => _front.Grant.GetSharedFrame(0));
    }

    /// <summary>
    /// Every public GrantTableHost method refuses a domain of another host ("Exceptions are reserved for host programming
    /// errors (a null domain, a domain of another host)"), DestroyDomain too: without the check it freed the other
    /// host's table frame *numbers* through this host's FrameReferences, i.e. whatever frame of this machine has that
    /// number (here: a live domain's grant-table frame). Xen has one grant table per domain (grant_table_destroy frees
    /// d->grant_table's own pages only).
    /// </summary>
    [Fact]
    public void DestroyDomain_refuses_a_domain_of_another_host_and_frees_none_of_this_hosts_frames()
    {
        using var other = new TestMachine();
        TestDomain foreign = other.AddDomain(1);   // same construction order as _front: same frame numbers
        var victim = new MachineFrameNumber(foreign.Grant.GetSharedFrame(0).Value);
        Assert.True(_m.Memory.TryGetOwner(victim, out FrameOwner before), "precondition: the number is allocated here");

        Exception? ex = Record.Exception(() => _m.Host.DestroyDomain(foreign.Grant));

        bool stillOwned = _m.Memory.TryGetOwner(victim, out FrameOwner after);
        Assert.True(stillOwned && after == before,
            $"DestroyDomain of another host's domain freed frame {victim} of this machine (owner was {before})");
        Assert.False(foreign.Grant.IsDestroyed, "the other host's domain was marked destroyed by the wrong host");
        Assert.IsType<ArgumentException>(ex);
    }

    /// <summary>
    /// Granter dies first, then its domid is reused. Xen: the mappings keep the frames (put_page at the unmap,
    /// unmap_common_complete), the new domain's table is fresh (grant_table_init) and an unmap of an old mapping acts on
    /// the old grant only. Checks: the frame is freed at the last of two mappings, not before; the new domain's pins and
    /// flags on the same reference are not touched by the old mappings' unmaps; its table frames hold no stale entry.
    /// </summary>
    [Fact]
    public unsafe void A_granter_dies_and_its_domid_is_reused_old_mappings_unmap_without_touching_the_new_domain()
    {
        TestDomain third = _m.AddDomain(3);
        const uint gref = 10;
        _front.RamPage(5).Fill(0xA1);
        Grant(_front, gref, 2, 5);
        GnttabMapGrantRef m1 = _m.MapGrant(_back, 1, gref, Slot);
        GnttabMapGrantRef m2 = _m.MapGrant(_back, 1, gref, Slot + 1, readOnly: true);
        Assert.Equal((0, 0), (m1.Status, m2.Status));
        MachineFrameNumber oldFrame = _front.Ram[5];

        _m.Kill(_front);
        Assert.True(_m.Frames.IsFreePending(oldFrame));
        TestDomain reborn = _m.AddDomain(1);

        // The new d1: a fresh, empty table; the old pins are not its pins.
        Assert.Equal(0u, reborn.Grant.GetPinCount(gref));
        Assert.True(_m.Memory.GetFrame(reborn.Grant.GetSharedFrame(0)).IndexOfAnyExcept((byte)0) < 0, "stale grant entries in the new table");

        // The new d1 grants the same reference to d3, which maps it.
        reborn.RamPage(5).Fill(0xB2);
        Grant(reborn, gref, 3, 5);
        GnttabMapGrantRef m3 = _m.MapGrant(third, 1, gref, Slot);
        Assert.Equal(0, m3.Status);
        Assert.Equal(0xB2, ReadByte(third, Slot << 12));
        Assert.Equal(0xA1, ReadByte(_back, Slot << 12));      // the old mapping still shows the old frame
        Assert.Equal(0xA1, ReadByte(_back, (Slot + 1) << 12));

        // d2 can map the new d1's grant only if granted to it: it is granted to d3.
        Assert.Equal((short)GrantStatus.GeneralError, _m.MapGrant(_back, 1, gref, Slot + 2).Status);

        // Unmapping the old mappings: the old frame goes at the last one; the new d1's grant keeps its pin and flags.
        ushort flagsBefore = V1(reborn, gref)->Flags;
        uint pinBefore = reborn.Grant.GetPinCount(gref);
        Assert.Equal(0, Unmap(_back, m1.Handle, Slot));
        Assert.True(_m.Frames.IsFreePending(oldFrame));
        Assert.Equal(0, Unmap(_back, m2.Handle, Slot + 1));
        Assert.False(_m.Frames.IsFreePending(oldFrame));
        Assert.False(_m.Memory.TryGetOwner(oldFrame, out _), "the old frame is still allocated after its last mapping went");
        Assert.Equal(flagsBefore, V1(reborn, gref)->Flags);
        Assert.Equal(pinBefore, reborn.Grant.GetPinCount(gref));
        Assert.Equal(0xB2, ReadByte(third, Slot << 12));
        Assert.Equal(0, _back.Grant.MappingCount);

        Assert.Equal(0, Unmap(third, m3.Handle, Slot));
        Assert.Equal((ushort)GrantEntryFlags.PermitAccess, V1(reborn, gref)->Flags);

        // A second DestroyDomain of the old instance must not touch the new domain that has its id.
        GrantDomain old = _front.Grant;
        _m.Host.DestroyDomain(old);
        Assert.True(_m.Host.TryGetDomain(1, out GrantDomain found) && ReferenceEquals(found, reborn.Grant));
        Assert.False(reborn.Grant.IsDestroyed);
        Assert.Equal(1, reborn.Grant.SharedFrameCount);
    }

    /// <summary>
    /// A vCPU of a killed domain that still issues grant operations (its GrantDomain kept by a stale hypervisor thread,
    /// its EPT already disposed): every operation answers the status Xen gives a domain without a grant table or a
    /// dying one, and nothing throws. (Xen: rcu_lock_domain_by_any_id(DOMID_SELF) still finds a dying domain; its grant
    /// table is empty after gnttab_release_mappings; here the table is gone as the README documents.)
    /// </summary>
    [Fact]
    public void Every_operation_of_a_destroyed_domain_answers_a_status_and_throws_nothing()
    {
        Grant(_front, 10, 2, 5);
        GnttabMapGrantRef m = _m.MapGrant(_back, 1, 10, Slot);
        Assert.Equal(0, m.Status);
        GrantDomain dead = _back.Grant;
        _m.Kill(_back);

        Assert.Equal((short)GrantStatus.BadDomain, _m.MapGrant(_back, 1, 10, Slot + 1).Status);
        Assert.Equal((short)GrantStatus.BadHandle, Unmap(_back, m.Handle, Slot));
        Assert.Equal((short)GrantStatus.BadHandle, Replace(_back, m.Handle, Slot << 12, 0));
        var copy = new GnttabCopy { Source = new() { Ref = 10, DomId = 1 }, Dest = new() { Gmfn = 3, DomId = DomainId.Self }, Len = 1, Flags = (ushort)GrantCopyFlags.SourceGref };
        _m.Host.Copy(dead, ref copy);
        Assert.Equal((short)GrantStatus.BadDomain, copy.Status);
        Assert.Equal(GrantStatus.BadDomain, _m.Host.SetupTable(dead, true, DomainId.Self, 1, new ulong[1]));
        var q = new GnttabQuerySize { Dom = DomainId.Self };
        _m.Host.QuerySize(dead, true, ref q);
        Assert.Equal((short)GrantStatus.BadDomain, q.Status);
        var gv = new GnttabGetVersion { Dom = DomainId.Self };
        Assert.Equal(XenErrno.ESRCH.Negated(), _m.Host.GetVersion(dead, true, ref gv));
        Assert.Equal(XenErrno.EINVAL.Negated(), SetVersion(_back, 2));
        Assert.Equal(GrantStatus.BadDomain, _m.Host.GetStatusFrames(dead, true, DomainId.Self, 0, new ulong[1]));
        Assert.Equal((short)GrantStatus.BadGntref, Swap(_back, 10, 11));
        Assert.Equal(XenErrno.EINVAL.Negated(), _m.Host.AddToPhysmap(dead, 0, new GuestFrameNumber(0x3000)));
        Assert.Equal(XenErrno.ENOENT.Negated(), _m.Host.RemoveTableFrame(dead, new GuestFrameNumber(Slot)));
        Assert.Equal(0, _m.Host.ReleaseMappings(dead));
        Assert.Equal(0u, _front.Grant.GetPinCount(10));
        Assert.Equal(0, _m.Frames.ReferenceCount(_front.Ram[5]));
    }

    /// <summary>
    /// Grantee dies first (v2 granter): gnttab_release_mappings drops every pin and clears GTF_reading/GTF_writing in the
    /// granter's status frame; a new domain with the grantee's domid gets a fresh maptrack (its handles name nothing), and
    /// may map the grants still addressed to that domid, as in Xen (the entry names a domid, not a domain instance).
    /// </summary>
    [Fact]
    public void A_grantee_dies_under_a_v2_granter_and_its_domid_is_reused()
    {
        Assert.Equal(0, SetVersion(_front, 2));
        const uint gref = 12;
        Grant(_front, gref, 2, 6);
        GnttabMapGrantRef m = _m.MapGrant(_back, 1, gref, Slot);
        Assert.Equal(0, m.Status);
        Assert.Equal((ushort)(GrantEntryFlags.Reading | GrantEntryFlags.Writing), StatusV2(_front, gref));
        Assert.Equal(1, _m.Frames.ReferenceCount(_front.Ram[6]));

        _m.Kill(_back);
        Assert.Equal(0u, _front.Grant.GetPinCount(gref));
        Assert.Equal(0, StatusV2(_front, gref));
        Assert.Equal(0, _m.Frames.ReferenceCount(_front.Ram[6]));
        Assert.Equal(0, Swap(_front, gref, gref + 1)); // nothing pins it any more
        Assert.Equal(0, Swap(_front, gref, gref + 1));

        TestDomain reborn = _m.AddDomain(2);
        Assert.Equal((short)GrantStatus.BadHandle, Unmap(reborn, m.Handle, Slot));
        Assert.Equal(0, reborn.Grant.MappingCount);
        GnttabMapGrantRef again = _m.MapGrant(reborn, 1, gref, Slot);
        Assert.Equal(0, again.Status);
        Assert.Equal(0, Unmap(reborn, again.Handle, Slot));
        Assert.Equal(0, StatusV2(_front, gref));
    }

    /// <summary>
    /// A copy hypercall holding a grant of d1 between two operations (gnttab_copy_buf_valid keeps it) while d1 dies and a
    /// new d1 is created. The README documents that a held claim is claimed again after a domain was destroyed (Xen would
    /// keep the page it holds: its d1 cannot be destroyed and its domid reused during the call). Checks the documented
    /// behaviour with domid reuse: the second operation reads only what the new d1 granted to the caller, the old frame
    /// is freed when the call lets it go, and nothing stays pinned in either table.
    /// </summary>
    [Fact]
    public void A_copy_call_across_the_granters_death_and_domid_reuse_releases_the_old_frame_and_pins_nothing()
    {
        const uint gref = 9;
        _front.RamPage(5).Fill(0xC3);
        Grant(_front, gref, 2, 5, readOnly: true);
        MachineFrameNumber oldFrame = _front.Ram[5];
        TestDomain? reborn = null;
        GnttabCopy Op(ulong dest) => new()
        {
            Source = new() { Ref = gref, DomId = 1 },
            Dest = new() { Gmfn = dest, DomId = DomainId.Self },
            Len = 8,
            Flags = (ushort)GrantCopyFlags.SourceGref,
            Status = 99,
        };

        short[] statuses = CopyHypercall.Run(_dispatcher, _back, [Op(7), Op(8)], i =>
        {
            _m.Kill(_front);
            Assert.True(_m.Frames.IsFreePending(oldFrame)); // the call's claim holds it
            reborn = _m.AddDomain(1);
            reborn.RamPage(5).Fill(0xD4);
            Grant(reborn, gref, 2, 5, readOnly: true);
        });

        Assert.Equal((short)0, statuses[0]);
        Assert.Equal(0xC3, _back.RamPage(7)[0]);
        Assert.True(statuses[1] == 0 ? _back.RamPage(8)[0] == 0xD4 : _back.RamPage(8)[0] == 0,
            $"operation 1 (status {statuses[1]}) wrote 0x{_back.RamPage(8)[0]:x2}: only the new d1's grant may be read");
        Assert.False(_m.Frames.IsFreePending(oldFrame));
        Assert.Equal(0, _m.Frames.ReferenceCount(oldFrame));
        Assert.Equal(0u, reborn!.Grant.GetPinCount(gref));
        unsafe
        {
            Assert.Equal((ushort)(GrantEntryFlags.PermitAccess | GrantEntryFlags.ReadOnly), V1(reborn, gref)->Flags);
        }
    }

    // ---------------------------------------------------------------- 2. set_version and table queries

    /// <summary>
    /// gnttab_set_version v2 → v1 with a reserved entry mapped: allowed (only entries ≥ GNTTAB_NR_RESERVED_ENTRIES must be
    /// idle); the entry is rebuilt in v1 form with flags | status_entry (so GTF_reading/GTF_writing move into the v1
    /// header); gnttab_unpopulate_status_frames removes the status frames from the p2m and frees them. The later unmap
    /// (unmap_common_complete) clears the flags where the current version keeps them: the v1 header.
    /// </summary>
    [Fact]
    public unsafe void Set_version_2_to_1_with_a_mapped_reserved_entry_moves_its_flags_into_the_v1_header()
    {
        Assert.Equal(0, SetVersion(_front, 2));
        Assert.Equal(0, _m.Host.AddToPhysmap(_front.Grant, GrantTableHost.GrantTableStatusIndex, new GuestFrameNumber(0x3000)));
        MachineFrameNumber status = _front.Grant.GetStatusFrame(0);
        const uint reserved = 3;
        Grant(_front, reserved, 2, 7);
        _front.RamPage(7).Fill(0x5E);
        GnttabMapGrantRef m = _m.MapGrant(_back, 1, reserved, Slot);
        Assert.Equal(0, m.Status);

        Assert.Equal(0, SetVersion(_front, 1));
        Assert.Equal(1, _front.Grant.Version);
        Assert.Equal(0, _front.Grant.StatusFrameCount);
        Assert.False(_front.Ept.TryLookup(new GuestFrameNumber(0x3000), out _, out _));
        Assert.False(_m.Memory.TryGetOwner(status, out FrameOwner o) && o == FrameOwner.Hypervisor);
        GrantEntryV1* e = V1(_front, reserved);
        Assert.Equal(((ushort)(GrantEntryFlags.PermitAccess | GrantEntryFlags.Reading | GrantEntryFlags.Writing), (ushort)2, 7u), (e->Flags, e->DomId, e->Frame));
        Assert.Equal(0x5E, ReadByte(_back, Slot << 12));

        Assert.Equal(0, Unmap(_back, m.Handle, Slot));
        Assert.Equal((ushort)GrantEntryFlags.PermitAccess, e->Flags);
        Assert.Equal(0u, _front.Grant.GetPinCount(reserved));
        Assert.Equal(0, _m.Frames.ReferenceCount(_front.Ram[7]));
    }

    /// <summary>
    /// gnttab_set_version scans nr_grant_entries(gt) of the version in force: under v1 an entry past the first 256 (past
    /// what v2 would address) pinned by a mapping makes v1 → v2 -EBUSY; op.version reports 1; nothing changes.
    /// </summary>
    [Fact]
    public unsafe void Set_version_is_busy_for_a_pinned_entry_past_the_v2_entry_count()
    {
        const uint gref = 300;
        Grant(_front, gref, 2, 5);
        GnttabMapGrantRef m = _m.MapGrant(_back, 1, gref, Slot, readOnly: true);
        Assert.Equal(0, m.Status);
        var op = new GnttabSetVersion { Version = 2 };
        Assert.Equal(XenErrno.EBUSY.Negated(), _m.Host.SetVersion(_front.Grant, ref op));
        Assert.Equal(1u, op.Version);
        Assert.Equal(0, _front.Grant.StatusFrameCount);
        Assert.Equal((ushort)(GrantEntryFlags.PermitAccess | GrantEntryFlags.Reading), V1(_front, gref)->Flags);
        Assert.Equal(0, Unmap(_back, m.Handle, Slot));
        Assert.Equal(0, SetVersion(_front, 2));
    }

    /// <summary>
    /// gnttab_setup_table / gnttab_query_size / gnttab_get_status_frames at their edges: nr_frames 0 is okay and grows
    /// nothing; a missing domain is GNTST_bad_domain; another domain without privilege is GNTST_permission_denied (query_size
    /// copies the op back with nr_frames/max_nr_frames as read); v1 has no status frames (nr_frames 0 okay, 1 general
    /// error); setup_table to max_grant_frames under v2 grows the status frames too (grant_to_status_frames).
    /// </summary>
    [Fact]
    public void Table_queries_at_their_edges()
    {
        Span<ulong> frames = new ulong[64];
        Assert.Equal(GrantStatus.Okay, _m.Host.SetupTable(_back.Grant, false, DomainId.Self, 0, frames));
        Assert.Equal(1, _back.Grant.SharedFrameCount);
        Assert.Equal(GrantStatus.BadDomain, _m.Host.SetupTable(_back.Grant, true, 77, 1, frames));
        Assert.Equal(GrantStatus.BadDomain, _m.Host.SetupTable(_back.Grant, true, DomainId.Xen, 1, frames));
        Assert.Equal(GrantStatus.PermissionDenied, _m.Host.SetupTable(_back.Grant, false, 1, 0, frames));

        var q = new GnttabQuerySize { Dom = 1, NrFrames = 0xAAAA, MaxNrFrames = 0xBBBB };
        _m.Host.QuerySize(_back.Grant, false, ref q);
        Assert.Equal(((short)GrantStatus.PermissionDenied, 0xAAAAu, 0xBBBBu), (q.Status, q.NrFrames, q.MaxNrFrames));
        q = new GnttabQuerySize { Dom = 77 };
        _m.Host.QuerySize(_back.Grant, true, ref q);
        Assert.Equal((short)GrantStatus.BadDomain, q.Status);
        q = new GnttabQuerySize { Dom = 1 };
        _m.Host.QuerySize(_back.Grant, true, ref q);
        Assert.Equal(((short)0, 1u, 64u), (q.Status, q.NrFrames, q.MaxNrFrames));

        Assert.Equal(GrantStatus.Okay, _m.Host.GetStatusFrames(_front.Grant, false, DomainId.Self, 0, frames));
        Assert.Equal(GrantStatus.GeneralError, _m.Host.GetStatusFrames(_front.Grant, false, DomainId.Self, 1, frames));
        Assert.Equal(GrantStatus.BadDomain, _m.Host.GetStatusFrames(_front.Grant, true, 77, 0, frames));

        Assert.Equal(0, SetVersion(_front, 2));
        Assert.Equal(GrantStatus.Okay, _m.Host.SetupTable(_front.Grant, false, DomainId.Self, 64, frames));
        Assert.Equal((64, 8), (_front.Grant.SharedFrameCount, _front.Grant.StatusFrameCount));
        Assert.Equal(GrantStatus.Okay, _m.Host.GetStatusFrames(_front.Grant, false, DomainId.Self, 8, frames));
        Assert.All(frames[..8].ToArray(), f => Assert.Equal(GrantTableHost.InvalidFrame, f));
        Assert.Equal(GrantStatus.GeneralError, _m.Host.SetupTable(_front.Grant, false, DomainId.Self, 65, new ulong[65]));
    }

    // ---------------------------------------------------------------- 3. unmap_and_replace and swap

    /// <summary>
    /// unmap_common via gnttab_unmap_and_replace: a handle past maptrack_limit or not in use is GNTST_bad_handle;
    /// host_addr 0 asks for nothing (okay, the mapping stays, whatever new_addr says); any new_addr for an HVM grantee is
    /// refused by replace_grant_p2m_mapping (general error) — also the address of another of its mappings, of another
    /// domain's grant — and changes nothing; new_addr 0 with the right address unmaps; a second time is bad_handle.
    /// </summary>
    [Fact]
    public void Unmap_and_replace_every_argument()
    {
        TestDomain third = _m.AddDomain(3);
        Grant(_front, 10, 2, 5);
        Grant(third, 10, 2, 6);
        GnttabMapGrantRef a = _m.MapGrant(_back, 1, 10, Slot);
        GnttabMapGrantRef b = _m.MapGrant(_back, 3, 10, Slot + 1);
        Assert.Equal((0, 0), (a.Status, b.Status));

        Assert.Equal((short)GrantStatus.BadHandle, Replace(_back, 1_000_000, Slot << 12, 0));
        Assert.Equal((short)GrantStatus.BadHandle, Replace(_back, (uint)_back.Grant.MaptrackCapacity - 1, Slot << 12, 0));
        Assert.Equal((short)GrantStatus.Okay, Replace(_back, a.Handle, 0, (Slot + 1) << 12));
        Assert.Equal((short)GrantStatus.GeneralError, Replace(_back, a.Handle, Slot << 12, (Slot + 1) << 12)); // another domain's grant
        Assert.Equal((short)GrantStatus.GeneralError, Replace(_back, a.Handle, Slot << 12, Slot << 12));       // itself
        Assert.Equal((short)GrantStatus.GeneralError, Replace(_back, a.Handle, (Slot + 1) << 12, 0));           // b's address
        Assert.Equal(2, _back.Grant.MappingCount);
        Assert.Equal(_front.Ram[5].Address, a.DevBusAddr);
        Assert.True(_back.Ept.TryLookup(new GuestFrameNumber(Slot), out MachineFrameNumber fa, out _) && fa == _front.Ram[5]);
        Assert.True(_back.Ept.TryLookup(new GuestFrameNumber(Slot + 1), out MachineFrameNumber fb, out _) && fb == third.Ram[6]);

        Assert.Equal((short)GrantStatus.Okay, Replace(_back, a.Handle, (Slot << 12) | 0x123, 0));
        Assert.Equal((short)GrantStatus.BadHandle, Replace(_back, a.Handle, Slot << 12, 0));
        Assert.Equal(0u, _front.Grant.GetPinCount(10));
        Assert.NotEqual(0u, third.Grant.GetPinCount(10));
        Assert.Equal(0, Unmap(_back, b.Handle, Slot + 1));
        Assert.Equal(0u, third.Grant.GetPinCount(10));
    }

    /// <summary>
    /// swap_grant_ref: both bounds are checked first (GNTST_bad_gntref, even when the other ref is busy); the same ref
    /// twice is a no-op (okay) even when pinned; a pinned ref on either side is GNTST_eagain; swapped entries keep the
    /// later map of each ref on the swapped frame; under v2 the bound is the v2 entry count.
    /// </summary>
    [Fact]
    public unsafe void Swap_every_argument()
    {
        Grant(_front, 10, 2, 5);
        Grant(_front, 11, 2, 6);
        GnttabMapGrantRef m = _m.MapGrant(_back, 1, 10, Slot);
        Assert.Equal(0, m.Status);
        int entries = _front.Grant.EntryCount;
        Assert.Equal((short)GrantStatus.BadGntref, Swap(_front, 10, (uint)entries));
        Assert.Equal((short)GrantStatus.BadGntref, Swap(_front, (uint)entries, 10));
        Assert.Equal((short)GrantStatus.BadGntref, Swap(_front, uint.MaxValue, uint.MaxValue));
        Assert.Equal((short)GrantStatus.Okay, Swap(_front, 10, 10));
        Assert.Equal((short)GrantStatus.Eagain, Swap(_front, 10, 11));
        Assert.Equal((short)GrantStatus.Eagain, Swap(_front, 11, 10));
        Assert.Equal(0, Unmap(_back, m.Handle, Slot));

        Assert.Equal((short)GrantStatus.Okay, Swap(_front, 10, 11));
        Assert.Equal((6u, 5u), (V1(_front, 10)->Frame, V1(_front, 11)->Frame));
        Assert.Equal(_front.Ram[6].Address, _m.MapGrant(_back, 1, 10, Slot + 2).DevBusAddr);

        // Under v2 (after the map above is gone) the bound is 256 per frame.
        Assert.Equal(1, _m.Host.ReleaseMappings(_back.Grant));
        Assert.Equal(0, SetVersion(_front, 2));
        Assert.Equal((short)GrantStatus.BadGntref, Swap(_front, 10, 256));
        Assert.Equal((short)GrantStatus.Okay, Swap(_front, 10, 255));
    }

    // ---------------------------------------------------------------- 4. unmap validation

    /// <summary>
    /// unmap_common: handles are per domain (lgt = current->domain's): another domain's handle names that domain's own
    /// maptrack entry, so using it with the mapper's address is bad_handle (nothing there) or general error (its own
    /// mapping is elsewhere, replace_grant_p2m_mapping); host_addr 0 leaves the mapping (okay); the right one unmaps
    /// (dev_bus_addr matters only for device mappings); a double unmap is bad_handle.
    /// </summary>
    [Fact]
    public void Unmap_by_another_domain_or_with_wrong_arguments_changes_nothing()
    {
        TestDomain third = _m.AddDomain(3);
        Grant(_front, 10, 2, 5);
        Grant(_front, 11, 3, 6);
        GnttabMapGrantRef mine = _m.MapGrant(_back, 1, 10, Slot);
        Assert.Equal(0, mine.Status);

        Assert.Equal((short)GrantStatus.BadHandle, Unmap(third, mine.Handle, Slot));
        GnttabMapGrantRef theirs = _m.MapGrant(third, 1, 11, Slot + 7);
        Assert.Equal(0, theirs.Status);
        Assert.Equal(mine.Handle, theirs.Handle); // both first handles
        Assert.Equal((short)GrantStatus.GeneralError, Unmap(third, mine.Handle, Slot));
        Assert.Equal((short)GrantStatus.Okay, Unmap(_back, mine.Handle, 0, devBusAddr: _front.Ram[5].Address));
        Assert.Equal((1, 1), (_back.Grant.MappingCount, third.Grant.MappingCount));
        Assert.Equal((short)GrantStatus.Okay, Unmap(_back, mine.Handle, Slot, devBusAddr: _front.Ram[6].Address));
        Assert.Equal((short)GrantStatus.BadHandle, Unmap(_back, mine.Handle, Slot));
        Assert.Equal(1, third.Grant.MappingCount);
        Assert.True(third.Ept.TryLookup(new GuestFrameNumber(Slot + 7), out MachineFrameNumber f, out _) && f == _front.Ram[6]);
    }

    // ---------------------------------------------------------------- 5. physmap interplay

    /// <summary>
    /// xenmem_add_to_physmap_one with XENMAPSPACE_grant_table over a gfn whose RAM page the domain granted and another
    /// domain maps: guest_remove_page drops the domain's allocation reference, the page lives on through the mapping's
    /// reference (freed at the unmap); a pinned grant keeps using act->mfn (map_grant_ref on a pinned entry), a new first
    /// pin of the entry finds the table frame at its gfn and is refused (get_paged_frame: not the domain's RAM).
    /// </summary>
    [Fact]
    public void A_table_frame_placed_over_a_granted_and_mapped_ram_page_frees_that_page_at_the_last_unmap()
    {
        Grant(_front, 10, 2, 5);
        _front.RamPage(5).Fill(0x6F);
        MachineFrameNumber ram = _front.Ram[5];
        GnttabMapGrantRef m = _m.MapGrant(_back, 1, 10, Slot);
        Assert.Equal(0, m.Status);

        Assert.Equal(0, _m.Host.AddToPhysmap(_front.Grant, 0, new GuestFrameNumber(5)));
        Assert.True(_m.Frames.IsFreePending(ram));
        Assert.True(_front.Ept.TryLookup(new GuestFrameNumber(5), out MachineFrameNumber now, out _));
        Assert.Equal(_front.Grant.GetSharedFrame(0), now);
        Assert.Equal(0x6F, ReadByte(_back, Slot << 12));

        GnttabMapGrantRef second = _m.MapGrant(_back, 1, 10, Slot + 1, readOnly: true); // pinned: act->mfn
        Assert.Equal(0, second.Status);
        Assert.Equal(ram.Address, second.DevBusAddr);
        Assert.Equal(0, Unmap(_back, m.Handle, Slot));
        Assert.Equal(0, Unmap(_back, second.Handle, Slot + 1));
        Assert.False(_m.Frames.IsFreePending(ram));
        Assert.False(_m.Memory.TryGetOwner(ram, out FrameOwner owner) && owner.DomainId == 1);

        Assert.Equal((short)GrantStatus.BadPage, _m.MapGrant(_back, 1, 10, Slot).Status); // gfn 5 is the table frame now
        Assert.Equal(0u, _front.Grant.GetPinCount(10));
    }

    /// <summary>
    /// A domain whose RAM is mapped with a 2 MiB EPT page and which is at its memory limit (max_pages = tot_pages; the EPT
    /// charges its tables to the domain) places a grant-table frame over one 4 KiB page of it. Splitting the large page
    /// needs a table frame: none can be had. Xen (xenmem_add_to_physmap_one → guest_physmap_remove_page → p2m_set_entry,
    /// which returns -ENOMEM when a split cannot allocate) answers an errno; a grant map into the same large page already
    /// answers GNTST_general_error here (create_grant_p2m_mapping). AddToPhysmap must not let EptTables.Unmap's
    /// MachineMemoryExhaustedException escape to the hypervisor's XENMEM_add_to_physmap handler (it did).
    /// </summary>
    [Fact]
    public void Add_to_physmap_over_a_large_page_with_no_frame_left_to_split_answers_an_errno_without_throwing()
    {
        var owner = new FrameOwner(5);
        var ept = new EptTables(_m.Memory, owner);
        MachineFrameNumber first = _m.Memory.AllocateContiguous(owner, 512, 512);
        ept.Map(new GuestFrameNumber(0x200).Address, first, 512, EptAccess.ReadWriteExecute);
        GrantDomain big = _m.Host.CreateDomain(5, ept);
        var bigDomain = new TestDomain(5, ept, big, [first], _m.Memory);
        _m.Memory.SetLimit(owner, _m.Memory.FramesOwnedBy(owner));

        // The grant map path already turns the failed split into a status.
        Grant(_front, 10, 5, 5);
        Assert.Equal((short)GrantStatus.GeneralError, _m.MapGrant(bigDomain, 1, 10, 0x202).Status);
        Assert.Equal(0u, _front.Grant.GetPinCount(10));

        long rc = 0;
        Exception? ex = Record.Exception(() => rc = _m.Host.AddToPhysmap(big, 0, new GuestFrameNumber(0x201)));
        Assert.Null(ex);
        Assert.True(rc < 0, $"rc {rc}");
        Assert.True(ept.TryLookup(new GuestFrameNumber(0x201), out MachineFrameNumber f, out _));
        Assert.Equal(first.Value + 1, f.Value);
    }

    // ---------------------------------------------------------------- 6. hypercall layer

    /// <summary>
    /// compat_grant_table_op, GNTTABOP_setup_table: the op is translated inside `for ( i = 0; i &lt; count &amp;&amp; rc == 0; )`,
    /// so a 32-bit caller's count 0 runs nothing and returns 0 (count &gt; 1 is -EINVAL); the native path calls
    /// gnttab_setup_table, which returns -EINVAL for any count but 1.
    /// </summary>
    [Fact]
    public void Compat_setup_table_with_count_0_returns_0_as_compat_grant_table_op_does()
    {
        Put(_back, Buffer, new CompatGnttabSetupTable { Dom = DomainId.Self, NrFrames = 1, FrameList = (uint)(Buffer + 0x100), Status = 99 });
        Assert.Equal(XenErrno.EINVAL.Negated(), Call(_back, (ulong)GrantTableOp.SetupTable, Buffer, 2, HypercallAbi.Compat32));
        Assert.Equal(XenErrno.EINVAL.Negated(), Call(_back, (ulong)GrantTableOp.SetupTable, Buffer, 0, HypercallAbi.Native64));
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.SetupTable, Buffer, 0, HypercallAbi.Compat32));
        Assert.Equal((short)99, Get<CompatGnttabSetupTable>(_back, Buffer).Status);
    }

    /// <summary>
    /// do_grant_table_op: set_version and get_version ignore count (even 0) but a negative count is -EINVAL first; for a
    /// 32-bit caller the same layouts are used (CHECK_gnttab_set_version/get_version/query_size/swap_grant_ref) and only
    /// the low 32 bits of uop are an address; query_size with count 0 is -EINVAL (gnttab_query_size).
    /// </summary>
    [Fact]
    public void Version_ops_ignore_count_and_compat_uses_the_low_32_bits_of_uop()
    {
        Put(_back, Buffer, new GnttabSetVersion { Version = 2 });
        Assert.Equal(XenErrno.EINVAL.Negated(), Call(_back, (ulong)GrantTableOp.SetVersion, Buffer, 0x8000_0000));
        Assert.Equal(1, _back.Grant.Version);
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.SetVersion, Buffer, 0));
        Assert.Equal(2, _back.Grant.Version);

        Put(_back, Buffer + 8, new GnttabGetVersion { Dom = DomainId.Self });
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.GetVersion, (1UL << 32) | (Buffer + 8), 7, HypercallAbi.Compat32));
        Assert.Equal(2u, Get<GnttabGetVersion>(_back, Buffer + 8).Version);

        Put(_back, Buffer + 16, new GnttabQuerySize { Dom = DomainId.Self });
        Assert.Equal(XenErrno.EINVAL.Negated(), Call(_back, (ulong)GrantTableOp.QuerySize, Buffer + 16, 0, HypercallAbi.Compat32));
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.QuerySize, (0xFFFF_FFFFUL << 32) | (Buffer + 16), 1, HypercallAbi.Compat32));
        Assert.Equal(((short)0, 1u), (Get<GnttabQuerySize>(_back, Buffer + 16).Status, Get<GnttabQuerySize>(_back, Buffer + 16).NrFrames));

        Grant(_back, 20, 1, 3);
        Grant(_back, 21, 1, 4);
        Put(_back, Buffer + 32, new GnttabSwapGrantRef { RefA = 20, RefB = 21, Status = 99 });
        Put(_back, Buffer + 44, new GnttabSwapGrantRef { RefA = 20, RefB = 256, Status = 99 });
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.SwapGrantRef, Buffer + 32, 2, HypercallAbi.Compat32));
        Assert.Equal(((short)0, (short)GrantStatus.BadGntref), (Get<GnttabSwapGrantRef>(_back, Buffer + 32).Status, Get<GnttabSwapGrantRef>(_back, Buffer + 44).Status));
    }

    /// <summary>
    /// gnttab_unmap_grant_ref through the hypercall, 33 operations: the preemption check comes after each batch of
    /// GNTTAB_UNMAP_BATCH_SIZE (32) when operations remain; the same handle twice in one batch is unmapped once (the
    /// second is GNTST_bad_handle); every pin and frame reference is dropped, and the continuation resumes at op 32.
    /// </summary>
    [Fact]
    public void Unmap_batches_preempt_after_32_and_a_handle_twice_in_a_batch_unmaps_once()
    {
        var handles = new uint[32];
        for (uint i = 0; i < 32; i++)
        {
            Grant(_front, 10 + i, 2, i);
            GnttabMapGrantRef m = _m.MapGrant(_back, 1, 10 + i, Slot + i, readOnly: true);
            Assert.Equal(0, m.Status);
            handles[i] = m.Handle;
        }

        const int size = 24;
        for (uint i = 0; i < 32; i++)
        {
            Put(_back, Buffer + (i * size), new GnttabUnmapGrantRef { HostAddr = (Slot + i) << 12, Handle = handles[i], Status = 99 });
        }

        Put(_back, Buffer + (1 * size), new GnttabUnmapGrantRef { HostAddr = Slot << 12, Handle = handles[0], Status = 99 }); // op 1 repeats op 0
        Put(_back, Buffer + (32 * size), new GnttabUnmapGrantRef { HostAddr = (Slot + 1) << 12, Handle = handles[1], Status = 99 });

        int checks = 0;
        _dispatcher.PreemptCheck = _ => ++checks == 1;
        HypercallArguments args = default;
        args[0] = (ulong)GrantTableOp.UnmapGrantRef;
        args[1] = Buffer;
        args[2] = 33;
        HypercallCall<TestDomain> call = _dispatcher.CreateCall(_back, (uint)HypercallNumber.GrantTableOp, HypercallAbi.Native64, _back.Virtual, args);
        Assert.Equal((long)HypercallNumber.GrantTableOp, _dispatcher.Invoke(ref call));
        Assert.Equal(1, checks);
        Assert.Equal((Buffer + (32 * size), 1UL), (call.Arguments[1], call.Arguments[2]));
        Assert.Equal((short)0, Get<GnttabUnmapGrantRef>(_back, Buffer).Status);
        Assert.Equal((short)GrantStatus.BadHandle, Get<GnttabUnmapGrantRef>(_back, Buffer + size).Status);
        Assert.Equal((short)99, Get<GnttabUnmapGrantRef>(_back, Buffer + (32 * size)).Status);
        Assert.Equal(1, _back.Grant.MappingCount);

        _dispatcher.PreemptCheck = null;
        Assert.Equal(0, Call(_back, call.Arguments[0], call.Arguments[1], call.Arguments[2]));
        Assert.Equal((short)0, Get<GnttabUnmapGrantRef>(_back, Buffer + (32 * size)).Status);
        Assert.Equal(0, _back.Grant.MappingCount);
        for (uint i = 0; i < 32; i++)
        {
            Assert.Equal(0u, _front.Grant.GetPinCount(10 + i));
            Assert.Equal(0, _m.Frames.ReferenceCount(_front.Ram[i]));
        }
    }
}
