using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// Checks of GNTTABOP_copy that mutation testing of the copy path found no other test pinning, each against Xen 4.17's
/// grant_table.c (gnttab_copy, gnttab_copy_one, gnttab_copy_lock_domain, gnttab_copy_buf_valid, gnttab_copy_buf,
/// acquire_grant_for_copy, release_grant_for_copy): mostly operations that come right after one the batch holds and
/// differ from it only where a shortcut could overlook the difference.
/// </summary>
public sealed unsafe class CopyMutationTests : IDisposable
{
    private readonly TestMachine _m = new();
    private readonly HypercallDispatcher<TestDomain> _dispatcher = new();
    private readonly TestDomain _front; // the granter, d1
    private readonly TestDomain _back;  // the caller, d2
    private readonly InProcessGrantShare _share;

    public CopyMutationTests()
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

    private uint Grant(int gfn, bool readOnly = false, ushort to = 2)
    {
        Assert.True(_share.TryGrantForeignAccess(to, (ulong)gfn, readOnly, out uint gref));
        return gref;
    }

    private void Version2(TestDomain d)
    {
        var v = new GnttabSetVersion { Version = 2 };
        Assert.Equal(0, _m.Host.SetVersion(d.Grant, ref v));
    }

    private GrantEntryV2* EntryV2(TestDomain d, uint gref) =>
        (GrantEntryV2*)_m.Memory.GetFramePointer(d.Grant.GetSharedFrame(0)) + gref;

    private GrantEntryV1* EntryV1(TestDomain d, uint gref) =>
        (GrantEntryV1*)_m.Memory.GetFramePointer(d.Grant.GetSharedFrame(0)) + gref;

    private ushort StatusV2(TestDomain d, uint gref) =>
        ((ushort*)_m.Memory.GetFramePointer(d.Grant.GetStatusFrame(0)))[gref];

    private void SubPage(uint gref, ushort offset, ushort length)
    {
        GrantEntryV2* e = EntryV2(_front, gref);
        e->SubPageOffset = offset;
        e->SubPageLength = length;
        e->Flags |= (ushort)GrantEntryFlags.SubPage;
    }

    private static GnttabCopy FromGrant(uint gref, ushort offset, ulong gmfn, ushort to, ushort len, ushort dom = 1) =>
        new()
        {
            Source = new() { Ref = gref, DomId = dom, Offset = offset },
            Dest = new() { Gmfn = gmfn, DomId = DomainId.Self, Offset = to },
            Len = len,
            Flags = (ushort)GrantCopyFlags.SourceGref,
            Status = 99,
        };

    private static GnttabCopy ToGrant(ulong gmfn, ushort offset, uint gref, ushort to, ushort len, ushort dom = 1) =>
        new()
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

    /// <summary>
    /// Runs the operations as one hypercall of the backend; <paramref name="between"/>(i) runs before operation i
    /// (i ≥ 1).
    /// </summary>
    private short[] CallCopy(GnttabCopy[] ops, Action<int> between) =>
        CopyHypercall.Run(_dispatcher, _back, ops, between);

    // Allocates frames for d3 until the machine hands out `wanted` again (the allocator reuses freed frames), then
    // gives back the others so that memory is not exhausted.
    private bool Reallocate(MachineFrameNumber wanted, byte fill)
    {
        var owner = new FrameOwner(3);
        var others = new List<MachineFrameNumber>();
        bool found = false;
        while (_m.Memory.TryAllocateFrame(owner, out MachineFrameNumber f))
        {
            if (f.Value == wanted.Value)
            {
                _m.Memory.GetFrame(f).Fill(fill);
                found = true;
                break;
            }

            others.Add(f);
        }

        foreach (MachineFrameNumber f in others)
        {
            _m.Memory.FreeFrame(f);
        }

        return found;
    }

    private short[] Run(params GnttabCopy[] ops)
    {
        _m.Host.Copy(_back.Grant, ops.AsSpan());
        return [.. ops.Select(o => o.Status)];
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
        SubPage(gref, 4000, 200);
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
        var map = new GnttabMapGrantRef
        {
            HostAddr = 0x1000UL << 12,
            Flags = (uint)GrantMapFlags.HostMap,
            Ref = gref,
            Dom = 1,
        };
        _m.Host.MapGrantRef(_back.Grant, ref map);
        Assert.Equal(0, map.Status);
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
            var map = new GnttabMapGrantRef
            {
                HostAddr = (0x1000UL + i) << 12,
                Flags = (uint)(GrantMapFlags.HostMap | GrantMapFlags.ReadOnly),
                Ref = gref,
                Dom = 1,
            };
            _m.Host.MapGrantRef(_back.Grant, ref map);
            Assert.Equal(0, map.Status);
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
                Assert.True(Reallocate(table, 0xFF));
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
        SubPage(gref, 1000, 100);
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
