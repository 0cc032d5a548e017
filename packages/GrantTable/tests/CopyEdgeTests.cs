using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// GNTTABOP_copy's less-travelled paths against Xen 4.17's grant_table.c (gnttab_copy_one, gnttab_copy_lock_domain,
/// gnttab_copy_claim_buf, gnttab_copy_buf_valid, gnttab_copy_buf, acquire_grant_for_copy, _set_status_v2): v2 sub-page
/// grants, v2 status bits, both sides grants or one grant, a domain's grant to itself, the fast paths' keys, zero
/// lengths and unknown flags; and the checks mutation testing of the copy path found no test pinning, mostly
/// operations that come right after one the batch holds and differ from it only where a shortcut could overlook the
/// difference.
/// </summary>
public sealed unsafe class CopyEdgeTests : IDisposable
{
    private const ulong MapGfn = 0x1000;
    private readonly TestMachine _m = new();
    private readonly HypercallDispatcher<TestDomain> _dispatcher = new();
    private readonly TestDomain _front; // the granter, d1
    private readonly TestDomain _back;  // the caller, d2
    private readonly InProcessGrantShare _share;

    public CopyEdgeTests()
    {
        _front = _m.AddDomain(1);
        _back = _m.AddDomain(2);
        _share = new InProcessGrantShare(_m.Host, _front.Grant);
        new GrantTableHypercalls<TestDomain>(_m.Host, new TestResolver()).Register(_dispatcher);
        _front.RamPage(5).Fill(0x55);
        _front.RamPage(6).Fill(0x66);
        _back.RamPage(3).Fill(0x33);
        _back.RamPage(4).Fill(0x44);
    }

    public void Dispose() => _m.Dispose();

    /// <summary>Runs the operations as one hypercall of the backend; <paramref name="between"/>(i) runs before operation i (i ≥ 1).</summary>
    private short[] CallCopy(GnttabCopy[] ops, Action<int> between) => CopyHypercall.Run(_dispatcher, _back, ops, between);

    private void Version2(TestDomain d)
    {
        var v = new GnttabSetVersion { Version = 2 };
        Assert.Equal(0, _m.Host.SetVersion(d.Grant, ref v));
    }

    private uint Grant(int gfn, bool readOnly = false, ushort to = 2)
    {
        Assert.True(_share.TryGrantForeignAccess(to, (ulong)gfn, readOnly, out uint gref));
        return gref;
    }

    private GrantEntryV2* EntryV2(TestDomain d, uint gref) => (GrantEntryV2*)_m.Memory.GetFramePointer(d.Grant.GetSharedFrame(0)) + gref;

    private GrantEntryV1* EntryV1(TestDomain d, uint gref) => (GrantEntryV1*)_m.Memory.GetFramePointer(d.Grant.GetSharedFrame(0)) + gref;

    private ushort StatusV2(TestDomain d, uint gref) => ((ushort*)_m.Memory.GetFramePointer(d.Grant.GetStatusFrame(0)))[gref];

    private static GnttabCopy FromGrant(uint gref, ushort offset, ulong gmfn, ushort to, ushort len, ushort dom = 1) => new()
    {
        Source = new() { Ref = gref, DomId = dom, Offset = offset },
        Dest = new() { Gmfn = gmfn, DomId = DomainId.Self, Offset = to },
        Len = len,
        Flags = (ushort)GrantCopyFlags.SourceGref,
        Status = 99,
    };

    private static GnttabCopy ToGrant(ulong gmfn, ushort offset, uint gref, ushort to, ushort len, ushort dom = 1) => new()
    {
        Source = new() { Gmfn = gmfn, DomId = DomainId.Self, Offset = offset },
        Dest = new() { Ref = gref, DomId = dom, Offset = to },
        Len = len,
        Flags = (ushort)GrantCopyFlags.DestGref,
        Status = 99,
    };

    private static GnttabCopy Frames(ulong from, ushort offset, ulong to, ushort toOffset, ushort len) => new()
    {
        Source = new() { Gmfn = from, DomId = DomainId.Self, Offset = offset },
        Dest = new() { Gmfn = to, DomId = DomainId.Self, Offset = toOffset },
        Len = len,
        Status = 99,
    };

    private GnttabMapGrantRef Map(uint gref, bool readOnly) => _m.MapGrant(_back, 1, gref, MapGfn, readOnly);

    private short[] Run(params GnttabCopy[] ops)
    {
        _m.Host.Copy(_back.Grant, ops.AsSpan());
        return [.. ops.Select(o => o.Status)];
    }

    /// <summary>
    /// acquire_grant_for_copy stores a v2 sub-page grant's sub_page.page_off in struct active_grant_entry's
    /// <c>unsigned int start:15</c> and hands gnttab_copy_claim_buf <c>*page_off = act->start</c>: a page_off of
    /// 0x8000 + 100 is the window [100, 150) for gnttab_copy_buf, and a copy there succeeds.
    /// </summary>
    [Fact]
    public void A_sub_page_offset_with_bit_15_set_is_cut_to_15_bits_as_Xens_active_entry_stores_it()
    {
        Version2(_front);
        uint gref = Grant(5);
        for (int i = 0; i < 4096; i++)
        {
            _front.RamPage(5)[i] = (byte)i;
        }

        _front.MakeSubPage(gref, 0x8000 + 100, 50);
        short[] st = Run(FromGrant(gref, 100, 3, 100, 50), FromGrant(gref, 99, 3, 99, 1));
        Assert.Equal([0, (short)GrantStatus.GeneralError], st);
        Assert.Equal(100, _back.RamPage(3)[100]);
        Assert.Equal(149, _back.RamPage(3)[149]);
        Assert.Equal(0x33, _back.RamPage(3)[99]);
        Assert.Equal(0u, _front.Grant.GetPinCount(gref));
        Assert.Equal(0, StatusV2(_front, gref));
    }

    /// <summary>
    /// acquire_grant_for_copy tests a v2 entry's type for GTF_transitive on every claim, pinned or not: a grant the
    /// caller has mapped read-only, whose granter then turns the entry into a transitive one, gives a copy
    /// GNTST_general_error (gnttab=transitive=0, as this implementation: "transitive grant when transitivity not
    /// allowed"; with transitive grants allowed, the self-referential trans_domid fails the same way), and the
    /// grant's frame is not read.
    /// </summary>
    [Fact]
    public void A_pinned_v2_grant_its_granter_turned_transitive_is_refused_to_a_copy_from_it()
    {
        Version2(_front);
        uint gref = Grant(5);
        Assert.Equal(0, Map(gref, readOnly: true).Status);
        GrantEntryV2* e = EntryV2(_front, gref);
        e->Flags = (ushort)GrantEntryFlags.Transitive; // domid stays 2
        e->TransDomId = 1;                             // self-referential
        short[] st = Run(FromGrant(gref, 0, 3, 0, 16));
        Assert.Equal([(short)GrantStatus.GeneralError], st);
        Assert.Equal(0x33, _back.RamPage(3)[0]);
        Assert.Equal(ActiveGrantEntry.HostReadIncrement, _front.Grant.GetPinCount(gref));
        Assert.Equal((ushort)GrantEntryFlags.Reading, StatusV2(_front, gref));
    }

    /// <summary>
    /// The same for a copy into the grant (pinned read-only by a map): _set_status_v2 sets GTF_reading|GTF_writing,
    /// then acquire_grant_for_copy fails with GNTST_general_error at unlock_out_clear, which clears GTF_writing
    /// again (no writable pin) and leaves GTF_reading (the map's). Nothing is written to the granter's frame.
    /// </summary>
    [Fact]
    public void A_pinned_v2_grant_its_granter_turned_transitive_is_refused_to_a_copy_into_it()
    {
        Version2(_front);
        uint gref = Grant(5);
        Assert.Equal(0, Map(gref, readOnly: true).Status);
        GrantEntryV2* e = EntryV2(_front, gref);
        e->Flags = (ushort)GrantEntryFlags.Transitive;
        e->TransDomId = 1;
        short[] st = Run(ToGrant(3, 0, gref, 0, 16));
        Assert.Equal([(short)GrantStatus.GeneralError], st);
        Assert.Equal(0x55, _front.RamPage(5)[0]);
        Assert.Equal(ActiveGrantEntry.HostReadIncrement, _front.Grant.GetPinCount(gref));
        Assert.Equal((ushort)GrantEntryFlags.Reading, StatusV2(_front, gref));
    }

    /// <summary>
    /// A v2 sub-page grant as the destination: gnttab_copy_buf's "copy dest out of bounds" (GNTST_general_error) for
    /// bytes outside [page_off, page_off + length), on the first claim and on the operations of the batch that reuse
    /// it; nothing written by a failed operation; the status entry cleared after the last use.
    /// </summary>
    [Fact]
    public void A_sub_page_grant_as_destination_bounds_every_operation_of_a_batch()
    {
        Version2(_front);
        uint gref = Grant(5);
        _front.MakeSubPage(gref, 1000, 100);
        short[] st = Run(
            ToGrant(3, 0, gref, 1000, 100),  // the whole window
            ToGrant(4, 0, gref, 999, 2),     // one byte before it
            ToGrant(4, 0, gref, 1050, 50),   // the end of it (claimed again after the failure)
            ToGrant(4, 0, gref, 1050, 51),   // one byte past it
            ToGrant(4, 0, gref, 1099, 1),
            ToGrant(4, 0, gref, 1100, 0),    // empty, at the end of the window
            ToGrant(4, 0, gref, 1101, 0));   // empty, past it
        Assert.Equal([0, (short)GrantStatus.GeneralError, 0, (short)GrantStatus.GeneralError, 0, 0, (short)GrantStatus.GeneralError], st);
        Assert.Equal(0x55, _front.RamPage(5)[999]);
        Assert.Equal(0x33, _front.RamPage(5)[1000]);
        Assert.Equal(0x33, _front.RamPage(5)[1049]);
        Assert.Equal(0x44, _front.RamPage(5)[1050]);
        Assert.Equal(0x44, _front.RamPage(5)[1099]);
        Assert.Equal(0x55, _front.RamPage(5)[1100]);
        Assert.Equal(0u, _front.Grant.GetPinCount(gref));
        Assert.Equal(0, StatusV2(_front, gref));
    }

    /// <summary>
    /// A sub-page grant whose page_off + length runs far past the page (length 0xFFF0): gnttab_copy_buf checks the page
    /// first (GNTST_bad_copy_arg), then the window, in int arithmetic, so nothing wraps; the batch's reuse of the
    /// claim gives the same statuses.
    /// </summary>
    [Fact]
    public void A_sub_page_length_past_the_page_is_bounded_by_the_page()
    {
        Version2(_front);
        uint gref = Grant(5);
        _front.MakeSubPage(gref, 4000, 0xFFF0);
        short[] st = Run(
            FromGrant(gref, 4000, 3, 0, 96),
            FromGrant(gref, 4000, 3, 0, 97),
            FromGrant(gref, 4095, 3, 0, 1),
            FromGrant(gref, 0xFFFF, 3, 0, 0xFFFF),
            FromGrant(gref, 3999, 3, 0, 1));
        Assert.Equal([0, (short)GrantStatus.BadCopyArg, 0, (short)GrantStatus.BadCopyArg, (short)GrantStatus.GeneralError], st);
        Assert.Equal(0u, _front.Grant.GetPinCount(gref));
        Assert.Equal(0, StatusV2(_front, gref));
    }

    /// <summary>
    /// Both sides one writable v2 grant (GNTCOPY_source_gref|GNTCOPY_dest_gref, same ref): acquire_grant_for_copy pins
    /// it for reading, then for writing (a second _set_status_v2 while pinned); the copy moves bytes within the
    /// granter's frame (overlapping, the destination below the source: Xen's forward memcpy and this memmove agree);
    /// release_grant_for_copy clears GTF_writing and GTF_reading only after the last pin.
    /// </summary>
    [Fact]
    public void Both_sides_one_v2_grant_copy_overlapping_bytes_within_the_frame_and_leave_no_status()
    {
        Version2(_front);
        uint gref = Grant(5);
        for (int i = 0; i < 4096; i++)
        {
            _front.RamPage(5)[i] = (byte)(i / 16);
        }

        var op = new GnttabCopy
        {
            Source = new() { Ref = gref, DomId = 1, Offset = 8 },
            Dest = new() { Ref = gref, DomId = 1, Offset = 0 },
            Len = 64,
            Flags = (ushort)(GrantCopyFlags.SourceGref | GrantCopyFlags.DestGref),
        };
        GnttabCopy again = op;
        again.Source.Offset = 200;
        again.Dest.Offset = 190;
        Assert.Equal([0, 0], Run(op, again));
        byte[] expected = new byte[4096];
        for (int i = 0; i < 4096; i++)
        {
            expected[i] = (byte)(i / 16);
        }

        Array.Copy(expected, 8, expected, 0, 64);
        Array.Copy(expected, 200, expected, 190, 64);
        Assert.Equal(expected, _front.RamPage(5).ToArray());
        Assert.Equal(0u, _front.Grant.GetPinCount(gref));
        Assert.Equal(0, StatusV2(_front, gref));
    }

    /// <summary>
    /// Both sides one frame of DOMID_SELF (gnttab_copy_buf_valid keeps each side's page; the batch's key reuses both):
    /// overlapping bytes with the destination below the source, where Xen's forward memcpy and this memmove agree, and
    /// a copy onto itself.
    /// </summary>
    [Fact]
    public void Both_sides_one_frame_of_DOMID_SELF_copy_overlapping_bytes()
    {
        for (int i = 0; i < 4096; i++)
        {
            _back.RamPage(7)[i] = (byte)(i * 7);
        }

        byte[] expected = _back.RamPage(7).ToArray();
        var op = new GnttabCopy { Source = new() { Gmfn = 7, DomId = DomainId.Self, Offset = 100 }, Dest = new() { Gmfn = 7, DomId = DomainId.Self, Offset = 50 }, Len = 2000 };
        GnttabCopy onto = op;
        onto.Dest.Offset = 100;
        GnttabCopy small = op;
        small.Source.Offset = 3000;
        small.Dest.Offset = 2990;
        small.Len = 40;
        Assert.Equal([0, 0, 0], Run(op, onto, small));
        Array.Copy(expected, 100, expected, 50, 2000);
        Array.Copy(expected, 3000, expected, 2990, 40);
        Assert.Equal(expected, _back.RamPage(7).ToArray());
    }

    /// <summary>
    /// Both sides one read-only grant: the source claim succeeds, the destination's _set_status fails ("Attempt to
    /// write-pin a r/o grant entry", GNTST_general_error), gnttab_copy releases both buffers: no pin, no flag, no byte.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void Both_sides_one_read_only_grant_fail_and_release_the_source(int version)
    {
        if (version == 2)
        {
            Version2(_front);
        }

        uint gref = Grant(5, readOnly: true);
        var op = new GnttabCopy
        {
            Source = new() { Ref = gref, DomId = 1, Offset = 0 },
            Dest = new() { Ref = gref, DomId = 1, Offset = 8 },
            Len = 64,
            Flags = (ushort)(GrantCopyFlags.SourceGref | GrantCopyFlags.DestGref),
        };
        Assert.Equal([(short)GrantStatus.GeneralError, 0], Run(op, FromGrant(gref, 0, 3, 0, 16)));
        Assert.All(_front.RamPage(5).ToArray(), b => Assert.Equal(0x55, b));
        Assert.Equal(0u, _front.Grant.GetPinCount(gref));
        if (version == 2)
        {
            Assert.Equal(0, StatusV2(_front, gref));
        }
        else
        {
            Assert.Equal((ushort)(GrantEntryFlags.PermitAccess | GrantEntryFlags.ReadOnly), EntryV1(_front, gref)->Flags);
        }
    }

    /// <summary>
    /// gnttab_copy_lock_domain: "Only DOMID_SELF may reference via frame" compares the domid with DOMID_SELF, not with
    /// the caller: the caller's own numeric id on a frame side is GNTST_permission_denied, also right after an
    /// operation that named the same frame as DOMID_SELF (the batch's key holds the domid).
    /// </summary>
    [Fact]
    public void A_frame_side_naming_the_callers_own_numeric_id_is_permission_denied()
    {
        var self = new GnttabCopy { Source = new() { Gmfn = 3, DomId = DomainId.Self }, Dest = new() { Gmfn = 4, DomId = DomainId.Self }, Len = 16 };
        GnttabCopy ownIdSource = self;
        ownIdSource.Source.DomId = 2;
        ownIdSource.Source.Offset = 16;
        GnttabCopy ownIdDest = self;
        ownIdDest.Dest.DomId = 2;
        ownIdDest.Dest.Offset = 32;
        Assert.Equal([0, (short)GrantStatus.PermissionDenied, 0, (short)GrantStatus.PermissionDenied], Run(self, ownIdSource, self, ownIdDest));
        Assert.Equal(0x33, _back.RamPage(4)[0]);
        Assert.Equal(0x44, _back.RamPage(4)[16]);
        Assert.Equal(0x44, _back.RamPage(4)[32]);
    }

    /// <summary>
    /// A domain's grant to itself, named by DOMID_SELF or by its own id on the grant side (gnttab_copy_lock_domain:
    /// rcu_lock_domain_by_any_id), used through the backend's fast path and the batch's key: the copy reads the frame
    /// the grant names, and nothing stays pinned.
    /// </summary>
    [Fact]
    public void A_grant_of_the_caller_to_itself_copies_by_DOMID_SELF_and_by_its_own_id()
    {
        var share = new InProcessGrantShare(_m.Host, _back.Grant);
        _back.RamPage(10).Fill(0xA0);
        Assert.True(share.TryGrantForeignAccess(2, 10, readOnly: true, out uint gref));
        short[] st = Run(
            FromGrant(gref, 0, 3, 0, 16, dom: DomainId.Self),
            FromGrant(gref, 16, 3, 16, 16, dom: DomainId.Self),
            FromGrant(gref, 32, 3, 32, 16, dom: 2),
            ToGrant(3, 0, gref, 0, 1, dom: DomainId.Self)); // read-only
        Assert.Equal([0, 0, 0, (short)GrantStatus.GeneralError], st);
        Assert.Equal(0xA0, _back.RamPage(3)[0]);
        Assert.Equal(0xA0, _back.RamPage(3)[47]);
        Assert.Equal(0x33, _back.RamPage(3)[48]);
        Assert.Equal(0u, _back.Grant.GetPinCount(gref));
        Assert.True(share.EndForeignAccess(gref));
    }

    /// <summary>
    /// gnttab_copy reads only GNTCOPY_source_gref and GNTCOPY_dest_gref of op->flags: any other bit is ignored, on the
    /// first operation and on the ones the batch's key matches.
    /// </summary>
    [Fact]
    public void Flag_bits_Xen_does_not_define_are_ignored()
    {
        uint gref = Grant(5, readOnly: true);
        GnttabCopy a = FromGrant(gref, 0, 3, 0, 16);
        a.Flags |= 0xFFFC;
        GnttabCopy b = FromGrant(gref, 16, 3, 16, 16);
        b.Flags |= 0x8000;
        var c = new GnttabCopy { Source = new() { Gmfn = 4, DomId = DomainId.Self }, Dest = new() { Gmfn = 3, DomId = DomainId.Self, Offset = 32 }, Len = 16, Flags = 0xFFFC };
        Assert.Equal([0, 0, 0], Run(a, b, c));
        Assert.Equal(0x55, _back.RamPage(3)[31]);
        Assert.Equal(0x44, _back.RamPage(3)[32]);
        Assert.Equal(0u, _front.Grant.GetPinCount(gref));
    }

    /// <summary>
    /// Zero-length operations: gnttab_copy_buf's checks pass at offset PAGE_SIZE and fail past it
    /// (GNTST_bad_copy_arg); both buffers are still claimed, so an empty copy into a read-only grant fails
    /// (GNTST_general_error) and one naming no grant fails with GNTST_bad_gntref.
    /// </summary>
    [Fact]
    public void Zero_length_operations_are_checked_as_any_other()
    {
        uint ro = Grant(5, readOnly: true);
        short[] st = Run(
            FromGrant(ro, 4096, 3, 4096, 0),
            FromGrant(ro, 4096, 3, 4096, 0),  // the batch's key
            FromGrant(ro, 4097, 3, 0, 0),
            FromGrant(ro, 0, 3, 4097, 0),
            ToGrant(3, 0, ro, 0, 0),
            FromGrant(999_999, 0, 3, 0, 0));
        Assert.Equal([0, 0, (short)GrantStatus.BadCopyArg, (short)GrantStatus.BadCopyArg, (short)GrantStatus.GeneralError, (short)GrantStatus.BadGntref], st);
        Assert.Equal(0u, _front.Grant.GetPinCount(ro));
        Assert.Equal((ushort)(GrantEntryFlags.PermitAccess | GrantEntryFlags.ReadOnly), EntryV1(_front, ro)->Flags);
    }

    /// <summary>
    /// Under v2 a copy's GTF_reading/GTF_writing go to the status entry only (_set_status_v2; the header keeps the
    /// granter's flags), both bits for a destination, GTF_reading alone for a source, for as long as the call holds the
    /// grant (gnttab_copy_buf_valid), and release_grant_for_copy clears them when the call moves on or ends; the status
    /// entry sharing the same 32-bit word is never touched.
    /// </summary>
    [Fact]
    public void V2_status_entries_show_a_calls_claims_and_only_those()
    {
        Version2(_front);
        uint ro = Grant(5, readOnly: true), rw = Grant(6);
        Assert.Equal(ro + 1, rw); // one status word holds both entries
        var seen = new List<(ushort Ro, ushort Rw, ushort RoHeader, ushort RwHeader)>();
        var both = new GnttabCopy
        {
            Source = new() { Ref = rw, DomId = 1, Offset = 0 },
            Dest = new() { Ref = rw, DomId = 1, Offset = 100 },
            Len = 16,
            Flags = (ushort)(GrantCopyFlags.SourceGref | GrantCopyFlags.DestGref),
        };
        short[] st = CallCopy(
            [FromGrant(ro, 0, 3, 0, 16), FromGrant(ro, 16, 3, 16, 16), ToGrant(4, 0, rw, 0, 16), ToGrant(4, 16, rw, 16, 16), both],
            _ => seen.Add((StatusV2(_front, ro), StatusV2(_front, rw), EntryV2(_front, ro)->Flags, EntryV2(_front, rw)->Flags)));
        Assert.Equal([0, 0, 0, 0, 0], st);
        const ushort r = (ushort)GrantEntryFlags.Reading, rw2 = (ushort)(GrantEntryFlags.Reading | GrantEntryFlags.Writing);
        const ushort pa = (ushort)GrantEntryFlags.PermitAccess, paro = (ushort)(GrantEntryFlags.PermitAccess | GrantEntryFlags.ReadOnly);
        Assert.Equal([(r, 0, paro, pa), (r, 0, paro, pa), (0, rw2, paro, pa), (0, rw2, paro, pa)], seen);
        Assert.Equal((0, 0), (StatusV2(_front, ro), StatusV2(_front, rw)));
        Assert.Equal((0u, 0u), (_front.Grant.GetPinCount(ro), _front.Grant.GetPinCount(rw)));
        Assert.Equal(0x44, _front.RamPage(6)[100]);
        Assert.True(_share.EndForeignAccess(ro));
        Assert.True(_share.EndForeignAccess(rw));
    }

    /// <summary>
    /// An unpinned transitive v2 entry as a copy's destination (the source side is XsaTests'): with transitive grants
    /// disabled acquire_grant_for_copy sets GTF_reading|GTF_writing through _set_status_v2, then fails with
    /// GNTST_general_error at unlock_out_clear, which clears both: the status entry ends as it began, nothing written.
    /// </summary>
    [Fact]
    public void A_transitive_destination_fails_and_leaves_no_status()
    {
        Version2(_front);
        GrantEntryV2* e = EntryV2(_front, 20);
        e->DomId = 2;
        e->TransDomId = 1;
        e->TransGref = 20;
        e->Flags = (ushort)GrantEntryFlags.Transitive;
        Assert.Equal([(short)GrantStatus.GeneralError], Run(ToGrant(3, 0, 20, 0, 16)));
        Assert.Equal(0u, _front.Grant.GetPinCount(20));
        Assert.Equal(0, StatusV2(_front, 20));
    }

    /// <summary>
    /// gnttab_copy_buf_valid compares a side's GNTCOPY_source_gref/GNTCOPY_dest_gref with what the buffer holds
    /// (have_grant) before the reference or frame number: a frame number equal to the grant reference the batch holds
    /// is a frame, so a foreign domid on it is GNTST_permission_denied (gnttab_copy_lock_domain), and a grant
    /// reference equal to the frame number the batch holds is a grant (here none: GNTST_general_error).
    /// </summary>
    [Fact]
    public void A_side_whose_gref_flag_changed_is_not_taken_for_the_held_one_of_the_same_number()
    {
        uint gref = Grant(5);
        GnttabCopy frameOfD1 = FromGrant(gref, 16, 3, 16, 16);
        frameOfD1.Flags = 0; // Source.Gmfn == gref, DomId 1
        GnttabCopy intoFrameOfD1 = ToGrant(4, 16, gref, 16, 16);
        intoFrameOfD1.Flags = 0;
        GnttabCopy ownGrant = Frames(5, 32, 3, 32, 16);
        ownGrant.Flags = (ushort)GrantCopyFlags.SourceGref; // Source.Ref 5 of DOMID_SELF: no such grant
        short[] st = Run(
            FromGrant(gref, 0, 3, 0, 16), frameOfD1,
            ToGrant(4, 0, gref, 0, 16), intoFrameOfD1,
            Frames(5, 0, 3, 0, 16), ownGrant);
        const short denied = (short)GrantStatus.PermissionDenied;
        Assert.Equal([0, denied, 0, denied, 0, (short)GrantStatus.GeneralError], st);
        Assert.Equal(0x33, _back.RamPage(3)[16]);
        Assert.Equal(0x33, _back.RamPage(3)[32]);
        Assert.Equal(0x55, _front.RamPage(5)[16]);
        Assert.Equal(0u, _front.Grant.GetPinCount(gref));
    }

    /// <summary>
    /// gnttab_copy_buf_valid compares the whole xen_pfn_t of a frame side (<c>p->u.gmfn == b->ptr.u.gmfn</c>): a frame
    /// number that differs from the held one only above bit 31 is claimed afresh, and get_paged_frame finds no such
    /// frame (GNTST_bad_page); on either side, with a grant on the other or frames on both.
    /// </summary>
    [Fact]
    public void A_frame_number_differing_from_the_held_one_above_bit_31_is_claimed_afresh()
    {
        const ulong high = 1UL << 32;
        uint gref = Grant(5);
        const short bad = (short)GrantStatus.BadPage;
        short[] st = Run(
            FromGrant(gref, 0, 3, 0, 16), FromGrant(gref, 16, 3 | high, 16, 16),
            ToGrant(4, 0, gref, 0, 16), ToGrant(4 | high, 16, gref, 16, 16),
            Frames(4, 0, 3, 64, 16), Frames(4 | high, 16, 3, 80, 16),
            Frames(4, 32, 3, 96, 16), Frames(4, 48, 3 | high, 112, 16));
        Assert.Equal([0, bad, 0, bad, 0, bad, 0, bad], st);
        Assert.Equal(0x33, _back.RamPage(3)[16]);
        Assert.Equal(0x44, _front.RamPage(5)[0]);
        Assert.Equal(0x55, _front.RamPage(5)[16]);
        Assert.Equal(0x44, _back.RamPage(3)[64]);
        Assert.Equal(0x33, _back.RamPage(3)[80]);
        Assert.Equal(0x44, _back.RamPage(3)[96]);
        Assert.Equal(0x33, _back.RamPage(3)[112]);
        Assert.Equal(0u, _front.Grant.GetPinCount(gref));
    }

    /// <summary>
    /// gnttab_copy_one compares each side's whole domid_t with the one the batch holds
    /// (<c>op->source.domid != src->ptr.domid</c>): a domid that differs only above its low byte is looked up again,
    /// and no domain 257 exists (GNTST_bad_domain); a frame side naming such a domid rather than DOMID_SELF is
    /// GNTST_permission_denied (gnttab_copy_lock_domain).
    /// </summary>
    [Fact]
    public void A_domid_differing_from_the_held_one_above_its_low_byte_is_looked_up_afresh()
    {
        uint gref = Grant(5);
        GnttabCopy frameOfOther = FromGrant(gref, 32, 3, 32, 16);
        frameOfOther.Dest.DomId = (ushort)(DomainId.Self ^ 0x0100);
        short[] st = Run(
            FromGrant(gref, 0, 3, 0, 16), FromGrant(gref, 16, 3, 16, 16, dom: 257),
            FromGrant(gref, 0, 3, 0, 16), frameOfOther,
            ToGrant(4, 0, gref, 0, 16), ToGrant(4, 16, gref, 16, 16, dom: 257));
        const short bad = (short)GrantStatus.BadDomain;
        Assert.Equal([0, bad, 0, (short)GrantStatus.PermissionDenied, 0, bad], st);
        Assert.Equal(0x33, _back.RamPage(3)[16]);
        Assert.Equal(0x33, _back.RamPage(3)[32]);
        Assert.Equal(0x55, _front.RamPage(5)[16]);
        Assert.Equal(0u, _front.Grant.GetPinCount(gref));
    }

    /// <summary>
    /// A v2 sub-page window may run past the page (acquire_grant_for_copy hands gnttab_copy_claim_buf page_off and
    /// length as the granter wrote them); gnttab_copy_buf checks PAGE_SIZE first for every operation, those that reuse
    /// the claim (gnttab_copy_buf_valid) too: with a window of [4000, 4200), no copy from or into the grant reaches
    /// past the page (GNTST_bad_copy_arg), and nothing is read or written.
    /// </summary>
    [Fact]
    public void A_sub_page_window_running_past_the_page_never_lets_a_reused_claim_past_it()
    {
        Version2(_front);
        uint gref = Grant(5);
        _front.MakeSubPage(gref, 4000, 200);
        const short bad = (short)GrantStatus.BadCopyArg;
        short[] st = Run(
            FromGrant(gref, 4000, 3, 0, 96), FromGrant(gref, 4000, 3, 100, 150),
            ToGrant(4, 0, gref, 4000, 96), ToGrant(4, 0, gref, 4000, 150));
        Assert.Equal([0, bad, 0, bad], st);
        Assert.Equal(0x55, _back.RamPage(3)[95]);
        Assert.Equal(0x33, _back.RamPage(3)[100]);
        Assert.Equal(0x44, _front.RamPage(5)[4095]);
        Assert.Equal(0u, _front.Grant.GetPinCount(gref));
        Assert.Equal(0, StatusV2(_front, gref));
    }

    /// <summary>
    /// acquire_grant_for_copy: a grant already pinned (here mapped by its grantee, d2) may be claimed only by the
    /// domain that pinned it ("Bad domain (%d != %d)", <c>act->domid != ldom</c>: GNTST_general_error); a third
    /// domain that names it reads and writes nothing, and the pin stays the map's.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void A_grant_pinned_by_its_grantee_is_refused_to_a_copy_by_another_domain(int version)
    {
        if (version == 2)
        {
            Version2(_front);
        }

        TestDomain third = _m.AddDomain(3);
        third.RamPage(3).Fill(0x03);
        uint gref = Grant(5);
        Assert.Equal(0, _m.MapGrant(_back, 1, gref, 0x1000).Status);
        GnttabCopy[] ops = [FromGrant(gref, 0, 3, 0, 16), ToGrant(3, 0, gref, 16, 16)];
        _m.Host.Copy(third.Grant, ops.AsSpan());
        Assert.Equal([(short)GrantStatus.GeneralError, (short)GrantStatus.GeneralError], ops.Select(o => o.Status));
        Assert.Equal(0x03, third.RamPage(3)[0]);
        Assert.Equal(0x55, _front.RamPage(5)[16]);
        Assert.Equal(ActiveGrantEntry.HostWriteIncrement, _front.Grant.GetPinCount(gref));
    }

    /// <summary>
    /// acquire_grant_for_copy refuses a claim of a grant whose pin count has any byte's top bit set
    /// (<c>act->pin &amp; 0x80808080U</c>, "risk of counter overflow": GNTST_general_error), as map_grant_ref does:
    /// after 128 read-only maps of one grant a copy from it fails, reads nothing and leaves the pin as the maps made
    /// it.
    /// </summary>
    [Fact]
    public void A_copy_of_a_grant_whose_pin_count_risks_overflow_is_refused()
    {
        uint gref = Grant(5, readOnly: true);
        const uint maps = 128;
        for (uint i = 0; i < maps; i++)
        {
            Assert.Equal(0, _m.MapGrant(_back, 1, gref, 0x1000UL + i, readOnly: true).Status);
        }

        Assert.Equal(maps * ActiveGrantEntry.HostReadIncrement, _front.Grant.GetPinCount(gref));
        Assert.Equal([(short)GrantStatus.GeneralError], Run(FromGrant(gref, 0, 3, 0, 16)));
        Assert.Equal(0x33, _back.RamPage(3)[0]);
        Assert.Equal(maps * ActiveGrantEntry.HostReadIncrement, _front.Grant.GetPinCount(gref));
    }

    /// <summary>
    /// gnttab_copy_lock_domain: "Only DOMID_SELF may reference via frame" holds beside a grant too: a frame side naming
    /// another domain (the granter, d1) or the caller's own numeric id next to a v1 grant is GNTST_permission_denied,
    /// and neither the caller's frame nor the granter's is read or written.
    /// </summary>
    [Theory]
    [InlineData((ushort)1)]
    [InlineData((ushort)2)]
    public void A_frame_side_beside_a_grant_naming_a_domid_other_than_DOMID_SELF_is_permission_denied(ushort domid)
    {
        uint gref = Grant(5);
        GnttabCopy from = FromGrant(gref, 0, 3, 0, 16);
        from.Dest.DomId = domid;
        GnttabCopy into = ToGrant(4, 0, gref, 16, 16);
        into.Source.DomId = domid;
        const short denied = (short)GrantStatus.PermissionDenied;
        Assert.Equal([denied, denied], Run(from, into));
        Assert.Equal(0x33, _back.RamPage(3)[0]);
        Assert.Equal(0, _front.RamPage(3)[0]);
        Assert.Equal(0x55, _front.RamPage(5)[16]);
        Assert.Equal(0u, _front.Grant.GetPinCount(gref));
    }

    /// <summary>
    /// A granter destroyed between two operations of one call while the call holds its grant: the claim is released
    /// without writing the granter's table, whose frame went back to the machine and now belongs to another domain.
    /// (Xen never writes memory the granter no longer owns: the call's rcu_lock_domain keeps the dying domain's
    /// grant table until its last reference goes, complete_domain_destroy -> grant_table_destroy.) The operations after
    /// the destruction get GNTST_bad_domain (gnttab_copy_lock_domain).
    /// </summary>
    [Fact]
    public void Releasing_a_claim_on_a_granter_destroyed_mid_call_does_not_write_its_freed_table_frame()
    {
        uint gref = Grant(5, readOnly: true);
        Assert.True(gref >= 8); // past GNTTAB_NR_RESERVED_ENTRIES: released in the word found when claimed
        MachineFrameNumber table = _front.Grant.GetSharedFrame(0);
        short[] st = CallCopy([FromGrant(gref, 0, 3, 0, 16), FromGrant(gref, 16, 3, 16, 16)], i =>
        {
            if (i == 1)
            {
                _m.Host.DestroyDomain(_front.Grant);
                Assert.True(_m.Reallocate(table, 0xFF));
            }
        });
        Assert.Equal([0, (short)GrantStatus.BadDomain], st);
        Assert.Equal(0x55, _back.RamPage(3)[0]);
        Assert.Equal(0x33, _back.RamPage(3)[16]);
        Assert.All(_m.Memory.GetFrame(table).ToArray(), b => Assert.Equal(0xFF, b));
    }

    /// <summary>
    /// _set_status_v1/_set_status_v2 (through acquire_grant_for_copy): a grant no one has pinned may be claimed only
    /// by the domain its entry names ("Bad flags (%x) or dom (%d); expected d%d": GNTST_general_error); a third
    /// domain naming a grant to d2, in the backend's shape (a grant on one side, its own frame on the other), reads and
    /// writes nothing and leaves no pin or flag.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void An_unpinned_grant_to_another_domain_is_refused_to_a_copy(int version)
    {
        if (version == 2)
        {
            Version2(_front);
        }

        TestDomain third = _m.AddDomain(3);
        third.RamPage(3).Fill(0x03);
        uint gref = Grant(5);
        GnttabCopy[] ops = [FromGrant(gref, 0, 3, 0, 16), ToGrant(3, 0, gref, 16, 16)];
        _m.Host.Copy(third.Grant, ops.AsSpan());
        Assert.Equal([(short)GrantStatus.GeneralError, (short)GrantStatus.GeneralError], ops.Select(o => o.Status));
        Assert.Equal(0x03, third.RamPage(3)[0]);
        Assert.Equal(0x55, _front.RamPage(5)[16]);
        Assert.Equal(0u, _front.Grant.GetPinCount(gref));
        if (version == 1)
        {
            Assert.Equal((ushort)GrantEntryFlags.PermitAccess, EntryV1(_front, gref)->Flags);
        }
        else
        {
            Assert.Equal(0, StatusV2(_front, gref));
        }
    }

    /// <summary>
    /// gnttab_copy_claim_buf sets <c>buf->ptr.offset = 0</c> and <c>buf->len = PAGE_SIZE</c> for a frame: a side that
    /// last held a v2 sub-page grant's window [1000, 1100) and now names a frame of DOMID_SELF may copy from offset 0.
    /// </summary>
    [Fact]
    public void A_frame_claimed_on_a_side_that_last_held_a_sub_page_grant_is_a_whole_page()
    {
        Version2(_front);
        uint gref = Grant(5);
        _front.MakeSubPage(gref, 1000, 100);
        short[] st = Run(
            FromGrant(gref, 1000, 3, 1000, 100), Frames(4, 0, 3, 0, 16),
            ToGrant(4, 0, gref, 1000, 16), Frames(3, 0, 4, 0, 16));
        Assert.Equal([0, 0, 0, 0], st);
        Assert.Equal(0x55, _back.RamPage(3)[1000]);
        Assert.Equal(0x44, _back.RamPage(3)[0]);
        Assert.Equal(0x44, _front.RamPage(5)[1000]);
        Assert.Equal(0u, _front.Grant.GetPinCount(gref));
    }
}
