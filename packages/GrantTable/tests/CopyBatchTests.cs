using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// A grant kept claimed across the operations of one <c>GNTTABOP_copy</c> call (Xen's gnttab_copy caches its source and
/// destination buffer between operations: gnttab_copy_buf_valid): what the granter sees meanwhile, and what happens
/// when the grant is revoked, its frame freed or its domain destroyed between two operations of one call. The
/// dispatcher's preemption hook runs between two operations, so the tests act there.
/// </summary>
public sealed unsafe class CopyBatchTests : IDisposable
{
    private const ulong MapGfn = 0x1000;
    private readonly TestMachine _m = new();
    private readonly TestDomain _front;
    private readonly TestDomain _back;
    private readonly HypercallDispatcher<TestDomain> _dispatcher = new();
    private readonly InProcessGrantShare _share;

    public CopyBatchTests()
    {
        _front = _m.AddDomain(1);
        _back = _m.AddDomain(2);
        _share = new InProcessGrantShare(_m.Host, _front.Grant);
        new GrantTableHypercalls<TestDomain>(_m.Host, new TestResolver()).Register(_dispatcher);
        _front.RamPage(5).Fill(0x55);
        _front.RamPage(6).Fill(0x66);
    }

    public void Dispose() => _m.Dispose();

    private uint Grant(int gfn, bool readOnly = true)
    {
        Assert.True(_share.TryGrantForeignAccess(2, (ulong)gfn, readOnly, out uint gref));
        return gref;
    }

    private static GnttabCopy FromGrant(uint gref, ulong gmfn, ushort offset = 0, ushort dom = 1) => new()
    {
        Source = new() { Ref = gref, DomId = dom, Offset = offset },
        Dest = new() { Gmfn = gmfn, DomId = DomainId.Self, Offset = offset },
        Len = 16,
        Flags = (ushort)GrantCopyFlags.SourceGref,
        Status = 99,
    };

    /// <summary>Runs the operations as one hypercall of the backend; <paramref name="between"/>(i) runs before operation i (i ≥ 1).</summary>
    private short[] CallCopy(GnttabCopy[] ops, Action<int> between) => CopyHypercall.Run(_dispatcher, _back, ops, between);

    private ushort EntryFlags(uint gref) =>
        *(ushort*)(_m.Memory.GetFramePointer(_front.Grant.GetSharedFrame(0)) + (gref * GrantEntryV1.Size));

    private byte* Shared(TestDomain d) => _m.Memory.GetFramePointer(d.Grant.GetSharedFrame(0));

    private ushort StatusV2(TestDomain d, uint gref) => ((ushort*)_m.Memory.GetFramePointer(d.Grant.GetStatusFrame(0)))[gref];

    private void FreeGranterFrame(int gfn)
    {
        // decrease_reservation by the granter: the gfn leaves its EPT and the frame is freed through the reference counts.
        _front.Ept.Unmap(new GuestFrameNumber((ulong)gfn).Address, 1);
        GuestPhysicalMemory.InvalidateSingleContext(_m.Memory, _front.Ept.Pointer);
        _m.Frames.Free(_front.Ram[gfn]);
    }

    private GnttabMapGrantRef Map(uint gref, ulong gfn, bool readOnly = true) => _m.MapGrant(_back, 1, gref, gfn, readOnly);

    private short Unmap(uint handle, ulong gfn)
    {
        var op = new GnttabUnmapGrantRef { HostAddr = gfn << 12, Handle = handle };
        _m.Host.UnmapGrantRef(_back.Grant, ref op);
        return op.Status;
    }

    [Fact]
    public void A_grant_used_by_consecutive_operations_is_pinned_once_and_released_when_the_call_moves_on_or_ends()
    {
        uint a = Grant(5), b = Grant(6);
        var seen = new List<(uint PinA, uint PinB)>();
        short[] st = CallCopy([FromGrant(a, 3), FromGrant(a, 3, 16), FromGrant(b, 4)],
            _ => seen.Add((_front.Grant.GetPinCount(a), _front.Grant.GetPinCount(b))));
        Assert.Equal([0, 0, 0], st);
        Assert.Equal([(256u, 0u), (256u, 0u)], seen); // one read pin on a through the second op; b not yet claimed
        Assert.Equal((0u, 0u), (_front.Grant.GetPinCount(a), _front.Grant.GetPinCount(b)));
        Assert.Equal(0, EntryFlags(a) & (ushort)GrantEntryFlags.Reading);
        Assert.Equal(0, EntryFlags(b) & (ushort)GrantEntryFlags.Reading);
        Assert.Equal(0x55, _back.RamPage(3)[31]);
        Assert.Equal(0x66, _back.RamPage(4)[0]);
    }

    [Fact]
    public void Ending_access_between_two_operations_fails_while_the_call_holds_the_grant_and_succeeds_after()
    {
        uint a = Grant(5);
        var ended = new List<bool>();
        short[] st = CallCopy([FromGrant(a, 3), FromGrant(a, 3, 16)], _ =>
        {
            Assert.True(_share.IsForeignAccessInUse(a)); // GTF_reading, as Xen leaves it while the buffer is held
            ended.Add(_share.EndForeignAccess(a));
        });
        Assert.Equal([0, 0], st);
        Assert.Equal([false], ended);
        Assert.True(_share.EndForeignAccess(a));
        Assert.Equal([(short)GrantStatus.GeneralError], CallCopy([FromGrant(a, 3)], _ => { }));
    }

    [Fact]
    public void A_grant_entry_cleared_behind_the_holders_back_is_honoured_until_the_call_ends_as_in_Xen()
    {
        uint a = Grant(5);
        short[] st = CallCopy([FromGrant(a, 3), FromGrant(a, 3, 16)], _ =>
            *(ulong*)(_m.Memory.GetFramePointer(_front.Grant.GetSharedFrame(0)) + (a * GrantEntryV1.Size)) = 0);
        Assert.Equal([0, 0], st); // the pin taken by the first operation covers the second (gnttab_copy_buf_valid)
        Assert.Equal(0u, _front.Grant.GetPinCount(a));
        Assert.Equal(0, EntryFlags(a));
        Assert.Equal([(short)GrantStatus.GeneralError], CallCopy([FromGrant(a, 3)], _ => { })); // a new call checks the entry again
    }

    [Fact]
    public void A_destination_frame_taken_out_of_the_callers_EPT_but_not_freed_stays_claimed_until_the_call_moves_on_as_in_Xen()
    {
        uint a = Grant(5);
        MachineFrameNumber frame = _back.Ram[3];
        short[] st = CallCopy([FromGrant(a, 3), FromGrant(a, 3, 16), FromGrant(a, 4, 32), FromGrant(a, 3, 48)], i =>
        {
            if (i == 1)
            {
                // The backend's gfn 3 leaves its EPT without its frame being freed: Xen's buffer keeps the page it took
                // a reference on (gnttab_copy_buf_valid compares the gmfn only), so does ours.
                _back.Ept.Unmap(new GuestFrameNumber(3).Address, 1);
                GuestPhysicalMemory.InvalidateSingleContext(_m.Memory, _back.Ept.Pointer);
            }
        });
        Assert.Equal([0, 0, 0, (short)GrantStatus.BadPage], st); // once the call moved to gfn 4, gfn 3 is claimed anew
        Assert.Equal(0x55, _m.Memory.GetFrame(frame)[16]);
        Assert.Equal(0, _m.Memory.GetFrame(frame)[48]);
        Assert.Equal(0u, _front.Grant.GetPinCount(a));
    }

    // A granted frame freed by its owner while a mapping and the call's claim hold references lives on until the last
    // one goes (Xen's get_page by map_grant_ref and by acquire_grant_for_copy): the operations that follow still copy the
    // granted bytes, and the frame is freed once the call lets go.
    [Fact]
    public void A_granted_frame_freed_while_mapped_and_claimed_is_copied_from_until_the_call_lets_go()
    {
        uint a = Grant(5);
        MachineFrameNumber frame = _front.Ram[5];
        GnttabMapGrantRef map = Map(a, 40); // read-only; the mapping holds a reference on the frame
        Assert.Equal(0, map.Status);
        short[] st = CallCopy([FromGrant(a, 3), FromGrant(a, 3, 16), FromGrant(a, 4, 32)], i =>
        {
            if (i == 1)
            {
                // The granter frees its frame: deferred, the mapping and the call's claim reference it.
                _front.Ept.Unmap(new GuestFrameNumber(5).Address, 1);
                GuestPhysicalMemory.InvalidateSingleContext(_m.Memory, _front.Ept.Pointer);
                Assert.False(_m.Frames.Free(frame));
            }
            else
            {
                // The backend unmaps: the call's claim still holds the frame.
                var unmap = new GnttabUnmapGrantRef { HostAddr = 40UL << 12, Handle = map.Handle };
                _m.Host.UnmapGrantRef(_back.Grant, ref unmap);
                Assert.Equal(0, unmap.Status);
                Assert.True(_m.Frames.IsFreePending(frame));
            }
        });
        Assert.Equal([0, 0, 0], st); // the pinned grant is honoured while the frame lives
        Assert.Equal(0x55, _back.RamPage(3)[16]);
        Assert.Equal(0x55, _back.RamPage(4)[32]);
        Assert.Equal(0u, _front.Grant.GetPinCount(a));
        Assert.False(_m.Frames.IsFreePending(frame));
        Assert.False(_m.Memory.TryGetOwner(frame, out _)); // freed when the call released its claim
    }

    // With sameDestination the second operation names exactly what the call holds (the path that claims nothing). The
    // call's claim holds a reference (Xen's get_page), so the granter's free is deferred; a free anywhere makes a call
    // claim again what it holds, with every check of a first claim (where Xen would keep the page it holds a reference
    // on), and the entry names a gfn the granter no longer has. The frame is freed when the claim lets go.
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_granted_frame_freed_between_two_operations_is_not_copied_from(bool sameDestination)
    {
        uint a = Grant(5);
        MachineFrameNumber frame = _front.Ram[5];
        int second = sameDestination ? 3 : 4;
        short[] st = CallCopy([FromGrant(a, 3), FromGrant(a, (ulong)second, 16)], _ =>
        {
            // decrease_reservation by the granter: the frame leaves its EPT; the call's claim defers its free
            _front.Ept.Unmap(new GuestFrameNumber(5).Address, 1);
            GuestPhysicalMemory.InvalidateSingleContext(_m.Memory, _front.Ept.Pointer);
            Assert.False(_m.Frames.Free(frame));
        });
        Assert.Equal([0, (short)GrantStatus.BadPage], st); // claimed again, with every check: the gfn is gone
        Assert.Equal(0, _back.RamPage(second)[16]);
        Assert.Equal(0u, _front.Grant.GetPinCount(a));
        Assert.Equal(0, EntryFlags(a) & (ushort)GrantEntryFlags.Reading);
        Assert.False(_m.Memory.TryGetOwner(frame, out _));
    }

    // framesStayUntilLater: the hypervisor destroys the granter's grant state between two operations that name exactly
    // what the call holds, and frees its frames only after the call (none is freed while the call runs).
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_granter_destroyed_between_two_operations_fails_the_rest_with_bad_domain(bool framesStayUntilLater)
    {
        uint a = Grant(5);
        ulong first = framesStayUntilLater ? 3UL : 4UL;
        short[] st = CallCopy([FromGrant(a, 3), FromGrant(a, first, 16), FromGrant(a, first, 32)], i =>
        {
            if (i == 1 && framesStayUntilLater)
            {
                _m.Host.DestroyDomain(_front.Grant);
            }
            else if (i == 1)
            {
                _m.Kill(_front); // grant state destroyed, every frame freed (and zeroed)
            }
        });
        Assert.Equal([0, (short)GrantStatus.BadDomain, (short)GrantStatus.BadDomain], st);
        Assert.Equal(0, _back.RamPage((int)first)[16]);
        Assert.Equal(0, _back.RamPage((int)first)[32]);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_caller_destroyed_between_two_operations_releases_what_it_held(bool sameFrame)
    {
        // With the same grant and frame, nothing but the count of destroyed domains tells the second operation that
        // its caller is gone (destroying it freed no frame).
        uint a = Grant(5);
        short[] st = CallCopy([FromGrant(a, 3), FromGrant(a, sameFrame ? 3UL : 4UL, 16)], i => _m.Host.DestroyDomain(_back.Grant));
        Assert.Equal([0, (short)GrantStatus.BadDomain], st);
        Assert.Equal(0u, _front.Grant.GetPinCount(a));
        Assert.True(_share.EndForeignAccess(a));
    }

    [Fact]
    public void A_frame_number_of_a_foreign_domain_is_refused_even_right_after_a_grant_of_that_domain()
    {
        // Xen checks "only DOMID_SELF by frame" only when an operation names other domains than the one before; here it
        // is checked for every operation, so a cached buffer of d1 never lets a gmfn of d1 through.
        uint a = Grant(5);
        Span<GnttabCopy> ops =
        [
            FromGrant(a, 3),
            new() { Source = new() { Gmfn = 6, DomId = 1 }, Dest = new() { Gmfn = 3, DomId = DomainId.Self }, Len = 16 },
            new() { Source = new() { Gmfn = 6, DomId = 1 }, Dest = new() { Gmfn = 3, DomId = DomainId.Self }, Len = 16, Flags = (ushort)GrantCopyFlags.DestGref },
        ];
        _m.Host.Copy(_back.Grant, ops);
        Assert.Equal(0, ops[0].Status);
        Assert.Equal((short)GrantStatus.PermissionDenied, ops[1].Status);
        Assert.Equal((short)GrantStatus.PermissionDenied, ops[2].Status);
        Assert.NotEqual(0x66, _back.RamPage(3)[0]);
        Assert.Equal(0u, _front.Grant.GetPinCount(a));
    }

    [Fact]
    public void Statuses_of_a_batch_are_those_of_one_operation_at_a_time()
    {
        // Every operation against a held grant still gets its own checks: offsets, sub-page bounds, access.
        uint a = Grant(5);
        Span<GnttabCopy> ops =
        [
            FromGrant(a, 3),
            FromGrant(a, 3, 4090),                                                   // beyond the page
            new() { Source = new() { Gmfn = 3, DomId = DomainId.Self }, Dest = new() { Ref = a, DomId = 1 }, Len = 1, Flags = (ushort)GrantCopyFlags.DestGref }, // read-only grant
            FromGrant(a, 3, 32),
            FromGrant(999_999, 3),                                                   // no such grant
            FromGrant(a, 3, 48),
        ];
        _m.Host.Copy(_back.Grant, ops);
        Assert.Equal([0, (short)GrantStatus.BadCopyArg, (short)GrantStatus.GeneralError, 0, (short)GrantStatus.BadGntref, 0],
            ops.ToArray().Select(o => o.Status));
        Assert.Equal(0u, _front.Grant.GetPinCount(a));
        Assert.True(_share.EndForeignAccess(a));
    }

    // Reserved entries 0-7 may stay in use across GNTTABOP_set_version (gnttab_set_version checks pins
    // from GNTTAB_NR_RESERVED_ENTRIES on), so a copy call can hold gref 1 while the granter switches v1 -> v2.
    // release_grant_for_copy picks the status word from the version in force at the release (v2: status_entry), so
    // GTF_reading goes from the status frame and nothing else of the table is touched.
    [Fact]
    public void A_reserved_grant_held_by_a_copy_call_across_set_version_1_to_2_is_released_in_its_status_entry()
    {
        var e = (GrantEntryV1*)Shared(_front);
        e[0] = new GrantEntryV1 { Flags = (ushort)GrantEntryFlags.PermitAccess, DomId = 2, Frame = 0x0F }; // a toolstack grant
        e[1] = new GrantEntryV1 { Flags = (ushort)(GrantEntryFlags.PermitAccess | GrantEntryFlags.ReadOnly), DomId = 2, Frame = 5 };

        short[] st = CallCopy([FromGrant(1, 3), FromGrant(1, 3, 16)], _ =>
        {
            var v = new GnttabSetVersion { Version = 2 };
            Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v)); // only entries past the reserved 8 must be idle
        });

        Assert.Equal([0, 0], st);
        Assert.Equal(2, _front.Grant.Version);
        Assert.Equal(0u, _front.Grant.GetPinCount(1));
        var v2 = (GrantEntryV2*)Shared(_front);
        Assert.Equal(0, StatusV2(_front, 1) & (ushort)GrantEntryFlags.Reading); // no user left: GTF_reading cleared
        Assert.Equal(0x0FUL, v2[0].Frame);                                   // entry 0 untouched
    }

    // The same across v2 -> v1: gnttab_unpopulate_status_frames frees the status frames, and
    // release_grant_for_copy then clears GTF_reading in the v1 header (version in force). Nothing may be written into
    // the freed status frame, which the machine may already have given to another domain.
    [Fact]
    public void A_reserved_grant_held_by_a_copy_call_across_set_version_2_to_1_never_writes_the_freed_status_frame()
    {
        var v = new GnttabSetVersion { Version = 2 };
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));
        MachineFrameNumber status = _front.Grant.GetStatusFrame(0);
        var e = (GrantEntryV2*)Shared(_front);
        e[1].DomId = 2;
        e[1].Frame = 5;
        e[1].Flags = (ushort)(GrantEntryFlags.PermitAccess | GrantEntryFlags.ReadOnly);

        bool reused = false;
        short[] st = CallCopy([FromGrant(1, 3), FromGrant(1, 3, 16)], _ =>
        {
            var v1 = new GnttabSetVersion { Version = 1 };
            Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v1));
            reused = _m.Reallocate(status, 0xFF); // d3 now owns the former status frame
        });

        Assert.True(reused);
        Assert.Equal([0, 0], st);
        Assert.All(_m.Memory.GetFrame(status).ToArray(), b => Assert.Equal(0xFF, b)); // d3's page unchanged
        Assert.Equal(0, ((GrantEntryV1*)Shared(_front))[1].Flags & (ushort)GrantEntryFlags.Reading);
        Assert.Equal(0u, _front.Grant.GetPinCount(1));
    }

    // A copy call's claim holds a reference on the granted frame (acquire_grant_for_copy's get_page), so the granter's
    // free while the call pins the grant is deferred and the frame cannot go to another domain. A map of that pinned grant
    // takes act->mfn once page_get_owner_and_reference() finds the granter: the granter's frame, with what it granted.
    [Fact]
    public void Mapping_a_grant_a_copy_call_pins_after_the_granter_freed_its_frame_maps_the_granters_frame()
    {
        uint a = Grant(5, readOnly: false);
        MachineFrameNumber frame = _front.Ram[5];
        Exception? thrown = null;
        GnttabMapGrantRef map = default;
        short[] st = CallCopy([FromGrant(a, 3), FromGrant(a, 3, 16)], i =>
        {
            FreeGranterFrame(5);
            Assert.True(_m.Frames.IsFreePending(frame)); // the call's claim holds it
            Assert.False(_m.Reallocate(frame, 0xEE));        // so the machine cannot hand it to d3
            Assert.Equal(ActiveGrantEntry.HostReadIncrement, _front.Grant.GetPinCount(a)); // the call still pins a
            thrown = Record.Exception(() => map = Map(a, MapGfn));
        });

        Assert.Null(thrown);
        Assert.Equal(0, st[0]);
        Assert.Equal(0, map.Status);
        Assert.True(_back.Ept.TryLookup(new GuestFrameNumber(MapGfn), out MachineFrameNumber mapped, out _));
        Assert.Equal(frame, mapped);
        var b = new byte[1];
        Assert.True(_back.TryRead(MapGfn << 12, b));
        Assert.Equal(0x55, b[0]);
        Assert.Equal(0, Unmap(map.Handle, MapGfn));
        Assert.False(_m.Memory.TryGetOwner(frame, out _)); // the last reference went with the unmap
    }

    // The granter frees a frame a grantee maps (its free is deferred by the mapping's reference); the
    // grantee maps the same pinned grant again. map_grant_ref: act->pin is set, so act->mfn is used and
    // page_get_owner_and_reference() finds the granter (the page lives on through the first mapping's reference):
    // GNTST_okay, a second mapping of the same page (the host must not refuse a frame whose free is pending).
    [Fact]
    public void A_mapped_grant_whose_frame_the_granter_freed_can_be_mapped_again_without_a_host_exception()
    {
        uint a = Grant(5, readOnly: false);
        MachineFrameNumber frame = _front.Ram[5];
        GnttabMapGrantRef first = Map(a, MapGfn);
        Assert.Equal(0, first.Status);
        FreeGranterFrame(5);
        Assert.True(_m.Frames.IsFreePending(frame));

        GnttabMapGrantRef second = default;
        Assert.Null(Record.Exception(() => second = Map(a, MapGfn + 1)));
        Assert.Equal(0, second.Status);
        var b = new byte[1];
        Assert.True(_back.TryRead((MapGfn + 1) << 12, b));
        Assert.Equal(0x55, b[0]);
        Assert.Equal(0, Unmap(first.Handle, MapGfn));
        Assert.Equal(0, Unmap(second.Handle, MapGfn + 1));
        Assert.Equal(0u, _front.Grant.GetPinCount(a));
        Assert.False(_m.Frames.IsFreePending(frame)); // the last unmap freed it
        Assert.False(_m.Memory.TryGetOwner(frame, out _));
    }

    // gnttab_copy_one: when either side names another domid than the call holds, BOTH buffers are
    // released (gnttab_copy_release_buf) and the domains locked again, so the side that did not change is claimed
    // afresh with every check:
    //  - frame side: the caller takes gfn 3 out of its EPT (not freed) between the operations; the fresh
    //    get_paged_frame fails (GNTST_bad_page), and nothing is written into the frame that left the EPT;
    //  - grant side: the granter clears its entry behind the hypervisor's back; the fresh acquire_grant_for_copy
    //    fails (GNTST_general_error), and nothing is written into the revoked grant.
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_domid_change_on_one_side_claims_the_other_side_again_as_in_Xen(bool grantSide)
    {
        TestDomain third = _m.AddDomain(3);
        third.RamPage(9).Fill(0x99);
        var thirdShare = new InProcessGrantShare(_m.Host, third.Grant);
        Assert.True(thirdShare.TryGrantForeignAccess(2, 9, true, out uint b));
        _back.RamPage(7).Fill(0x77);

        GnttabCopy first, second;
        uint g = Grant(6, readOnly: false);
        if (grantSide)
        {
            // op 1: own frame 7 -> d1's grant g; op 2: d3's grant b -> d1's grant g (the source's domid changes).
            first = new() { Source = new() { Gmfn = 7, DomId = DomainId.Self }, Dest = new() { Ref = g, DomId = 1 }, Len = 16, Flags = (ushort)GrantCopyFlags.DestGref };
            second = new() { Source = new() { Ref = b, DomId = 3 }, Dest = new() { Ref = g, DomId = 1, Offset = 16 }, Len = 16, Flags = (ushort)(GrantCopyFlags.SourceGref | GrantCopyFlags.DestGref) };
        }
        else
        {
            // op 1: d1's grant g -> own frame 3; op 2: d3's grant b -> own frame 3 (the source's domid changes).
            first = FromGrant(g, 3);
            second = FromGrant(b, 3, 16, dom: 3);
        }

        MachineFrameNumber ownFrame = _back.Ram[3];
        short[] st = CallCopy([first, second], _ =>
        {
            if (grantSide)
            {
                *(ulong*)(Shared(_front) + (g * GrantEntryV1.Size)) = 0; // revoked regardless of GTF_writing
            }
            else
            {
                _back.Ept.Unmap(new GuestFrameNumber(3).Address, 1);
                GuestPhysicalMemory.InvalidateSingleContext(_m.Memory, _back.Ept.Pointer);
            }
        });

        if (grantSide)
        {
            Assert.Equal([0, (short)GrantStatus.GeneralError], st);
            Assert.Equal(0x66, _front.RamPage(6)[16]); // nothing written into the revoked grant
        }
        else
        {
            Assert.Equal([0, (short)GrantStatus.BadPage], st);
            Assert.Equal(0, _m.Memory.GetFrame(ownFrame)[16]); // nothing written into the frame that left the EPT
        }

        Assert.Equal(0u, _front.Grant.GetPinCount(g));
        Assert.Equal(0u, third.Grant.GetPinCount(b));
    }

    // One copy call (another vCPU's, held open as the hypercall holds it between holds of the lock) pins grant a; the granter frees the granted frame. The
    // call's page reference keeps the frame allocated (acquire_grant_for_copy), so the machine cannot give it back to the
    // granter at a gfn it never granted; a second copy of a takes the pinned path and reads the granted bytes.
    [Fact]
    public void A_grant_pinned_by_another_copy_call_keeps_its_frame_from_coming_back_at_another_gfn()
    {
        uint a = Grant(5);
        MachineFrameNumber frame = _front.Ram[5];
        var batch = default(GrantTableHost.CopyBatch);
        GnttabCopy held = FromGrant(a, 3);
        Assert.Equal(1, _m.Host.CopyHeldRun(_back.Grant, new Span<GnttabCopy>(ref held), ref batch, endsBatch: false));
        Assert.Equal(0, held.Status);

        FreeGranterFrame(5);
        Assert.True(_m.Frames.IsFreePending(frame)); // held by the open call's claim
        var owner = new FrameOwner(1);
        var others = new List<MachineFrameNumber>();
        while (_m.Memory.TryAllocateFrame(owner, out MachineFrameNumber got))
        {
            Assert.NotEqual(frame, got);
            others.Add(got);
        }

        others.ForEach(_m.Memory.FreeFrame);

        Span<GnttabCopy> ops = [FromGrant(a, 4)];
        _m.Host.Copy(_back.Grant, ops);
        Assert.Equal(0, ops[0].Status);
        Assert.Equal(0x55, _back.RamPage(4)[0]);
        _m.Host.EndCopyBatch(ref batch);

        Assert.Equal(0u, _front.Grant.GetPinCount(a));
        Assert.False(_m.Memory.TryGetOwner(frame, out _)); // freed when the open call let go
    }
    // A call holds a read and a write claim on one grant across its holds (two references on the frame, Xen's two
    // get_page). The granter frees the frame and points its entry at another page; the next operation claims both sides
    // again: the source's claim takes the pinned path (the destination's claim still pins the grant), then the
    // destination's release drops one of the call's references and its claim again takes act->mfn. In Xen every claim of
    // acquire_grant_for_copy holds a page reference (page_get_owner_and_reference in the pinned path), so the frame
    // lives until the last claim of it goes: it must never be copied into, or counted, once freed.
    [Fact]
    public void A_claim_that_takes_the_pin_of_a_frame_whose_free_is_pending_keeps_the_frame_until_it_goes()
    {
        uint g = Grant(5, readOnly: false);
        MachineFrameNumber frame = _front.Ram[5];
        var both = new GnttabCopy
        {
            Source = new() { Ref = g, DomId = 1 },
            Dest = new() { Ref = g, DomId = 1, Offset = 2048 },
            Len = 16,
            Flags = (ushort)(GrantCopyFlags.SourceGref | GrantCopyFlags.DestGref),
        };
        bool pendingAfterFree = false, stillTheGranters = false, reallocated = true;
        uint pinAfter = 0;
        byte copied = 0;
        short[] st = CallCopy([both, both, FromGrant(g, 3)], i =>
        {
            if (i == 1)
            {
                FreeGranterFrame(5);
                pendingAfterFree = _m.Frames.IsFreePending(frame);
                ((GrantEntryV1*)Shared(_front))[g].Frame = 6; // behind the hypervisor's back, GTF_reading/writing set
            }
            else if (i == 2)
            {
                pinAfter = _front.Grant.GetPinCount(g);
                stillTheGranters = _m.Memory.TryGetOwner(frame, out FrameOwner o) && o.DomainId == 1;
                copied = stillTheGranters ? _m.Memory.GetFrame(frame)[2048] : (byte)0;
                reallocated = _m.Reallocate(frame, 0xEE);
            }
        });

        Assert.True(pendingAfterFree);
        Assert.Equal([0, 0, 0], st);
        Assert.Equal(ActiveGrantEntry.HostReadIncrement | ActiveGrantEntry.HostWriteIncrement, pinAfter);
        Assert.True(stillTheGranters); // the call's claims pin the grant on this frame: it is not freed under them
        Assert.Equal(0x55, copied);    // the second operation copied within the granted frame, as Xen's would
        Assert.False(reallocated);
        Assert.Equal(0x66, _back.RamPage(3)[0]); // the third claimed the grant afresh: the page its entry names now
        Assert.Equal(0u, _front.Grant.GetPinCount(g));
        Assert.False(_m.Memory.TryGetOwner(frame, out _)); // freed when the call let go of its last claim
        Assert.Equal(0, _m.Frames.ReferenceCount(frame));
        Assert.Equal(0, _m.Frames.PendingFreeCount);
    }

    /// <summary>
    /// The same on two threads, copies sharing the granter's word: call A joins, within one hold, the pin call B keeps
    /// across its holds on a frame whose free is pending; B lets go of the last reference while A still copies, and the
    /// frame must outlive A's claim (acquire_grant_for_copy takes a page reference in every branch).
    /// </summary>
    [Fact]
    public void A_claim_made_on_another_calls_pin_keeps_the_frame_when_that_call_lets_go_of_the_last_reference()
    {
        uint a = Grant(5), b = Grant(6);
        MachineFrameNumber frame = _front.Ram[5];
        _front.Grant.CopiesShare = 1; // the backend's copies of d1's grants share d1's word (two queues met)

        // Call B (one vCPU of the backend, between two holds) keeps grant a claimed, with a reference on its frame.
        var batchB = default(GrantTableHost.CopyBatch);
        GnttabCopy first = FromGrant(a, 3);
        Assert.Equal(1, _m.Host.CopyHeldRun(_back.Grant, new Span<GnttabCopy>(ref first), ref batchB, endsBatch: false));

        // The granter frees the frame: deferred, B's claim references it.
        FreeGranterFrame(5);
        Assert.True(_m.Frames.IsFreePending(frame));

        // Call A (another vCPU) claims a on top of B's pin and stays in its hold (its status write waits).
        using var inHold = new ManualResetEventSlim();
        using var letGo = new ManualResetEventSlim();
        var view = new StatusWriteGate(_back.Virtual, inHold, letGo);
        var callA = new Thread(() => CopyHypercall.Invoke(_dispatcher, _back, [FromGrant(a, 4)], view));
        callA.Start();
        Assert.True(inHold.Wait(TimeSpan.FromSeconds(30)));
        Assert.Equal(2 * ActiveGrantEntry.HostReadIncrement, _front.Grant.GetPinCount(a));

        // B moves on to grant b in a hold beside A's: it releases a and its reference.
        GnttabCopy second = FromGrant(b, 3);
        Assert.Equal(1, _m.Host.CopyHeldRun(_back.Grant, new Span<GnttabCopy>(ref second), ref batchB, endsBatch: true));
        bool stillAllocated = _m.Memory.TryGetOwner(frame, out FrameOwner owner);
        uint pin = _front.Grant.GetPinCount(a);

        letGo.Set();
        Assert.True(callA.Join(TimeSpan.FromSeconds(30)));

        Assert.Equal(ActiveGrantEntry.HostReadIncrement, pin); // A's claim still pins a...
        Assert.True(stillAllocated, "the frame of a grant A's claim pins was freed under it"); // ...so its frame stays
        Assert.Equal(1, owner.DomainId);
        Assert.False(_m.Memory.TryGetOwner(frame, out _)); // freed once A let go
        Assert.Equal(0u, _front.Grant.GetPinCount(a));
        Assert.Equal(0, _m.Frames.ReferenceCount(frame));
        Assert.Equal(0, _m.Frames.PendingFreeCount);
    }
}
