using System.Runtime.InteropServices;
using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// GNTTABOP_copy / map_grant_ref against Xen 4.17's grant_table.c when a hostile guest acts between two
/// operations of one copy hypercall (the dispatcher's preemption hook runs there, as another vCPU of the guest could).
/// Every test asserts what Xen does; the function of grant_table.c that decides it is named in a comment.
/// </summary>
public sealed unsafe class CopyPinnedFrameTests : IDisposable
{
    private const ulong Buffer = 20UL << 12;   // guest-physical buffer in the caller's RAM (paging off)
    private const int OpSize = 40;             // sizeof(struct gnttab_copy), 64-bit
    private const ulong MapGfn = 0x1000;
    private readonly TestMachine _m = new();
    private readonly TestDomain _front;
    private readonly TestDomain _back;
    private readonly HypercallDispatcher<TestDomain> _dispatcher = new();
    private readonly InProcessGrantShare _share;

    private sealed class Resolver : IGrantTableCallerResolver<TestDomain>
    {
        public GrantDomain? GetDomain(TestDomain caller) => caller.Dead ? null : caller.Grant;

        public bool IsPrivileged(TestDomain caller) => false;
    }

    public CopyPinnedFrameTests()
    {
        _front = _m.AddDomain(1);
        _back = _m.AddDomain(2);
        _share = new InProcessGrantShare(_m.Host, _front.Grant);
        new GrantTableHypercalls<TestDomain>(_m.Host, new Resolver()).Register(_dispatcher);
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

    /// <summary>Runs the operations as one copy hypercall of d2; <paramref name="between"/>(i) runs before operation i (i ≥ 1).</summary>
    private short[] CallCopy(GnttabCopy[] ops, Action<int> between)
    {
        for (int i = 0; i < ops.Length; i++)
        {
            Assert.True(_back.TryWrite(Buffer + (ulong)(i * OpSize), MemoryMarshal.AsBytes(new ReadOnlySpan<GnttabCopy>(in ops[i]))));
        }

        int next = 1;
        _dispatcher.PreemptCheck = _ =>
        {
            between(next++);
            return false;
        };
        HypercallArguments args = default;
        args[0] = (ulong)GrantTableOp.Copy;
        args[1] = Buffer;
        args[2] = (ulong)ops.Length;
        HypercallCall<TestDomain> call = _dispatcher.CreateCall(_back, (uint)HypercallNumber.GrantTableOp, HypercallAbi.Native64, _back.Virtual, args);
        Assert.Equal(0, _dispatcher.Invoke(ref call));
        _dispatcher.PreemptCheck = null;
        var statuses = new short[ops.Length];
        for (int i = 0; i < ops.Length; i++)
        {
            GnttabCopy op = default;
            Assert.True(_back.TryRead(Buffer + (ulong)(i * OpSize), MemoryMarshal.AsBytes(new Span<GnttabCopy>(ref op))));
            statuses[i] = op.Status;
        }

        return statuses;
    }

    private byte* Shared(TestDomain d) => _m.Memory.GetFramePointer(d.Grant.GetSharedFrame(0));

    private ushort StatusV2(TestDomain d, uint gref) => ((ushort*)_m.Memory.GetFramePointer(d.Grant.GetStatusFrame(0)))[gref];

    private void FreeGranterFrame(int gfn)
    {
        // decrease_reservation by the granter: the gfn leaves its EPT and the frame is freed through the reference counts.
        _front.Ept.Unmap(new GuestFrameNumber((ulong)gfn).Address, 1);
        GuestPhysicalMemory.InvalidateSingleContext(_m.Memory, _front.Ept.Pointer);
        _m.Frames.Free(_front.Ram[gfn]);
    }

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

    private GnttabMapGrantRef Map(uint gref, ulong gfn, bool readOnly = true)
    {
        var op = new GnttabMapGrantRef { HostAddr = gfn << 12, Flags = (uint)(GrantMapFlags.HostMap | (readOnly ? GrantMapFlags.ReadOnly : 0)), Ref = gref, Dom = 1 };
        _m.Host.MapGrantRef(_back.Grant, ref op);
        return op;
    }

    private short Unmap(uint handle, ulong gfn)
    {
        var op = new GnttabUnmapGrantRef { HostAddr = gfn << 12, Handle = handle };
        _m.Host.UnmapGrantRef(_back.Grant, ref op);
        return op.Status;
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
            reused = Reallocate(status, 0xFF); // d3 now owns the former status frame
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
            Assert.False(Reallocate(frame, 0xEE));        // so the machine cannot hand it to d3
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

    // One copy call (another vCPU's, held open with CopyInBatch) pins grant a; the granter frees the granted frame. The
    // call's page reference keeps the frame allocated (acquire_grant_for_copy), so the machine cannot give it back to the
    // granter at a gfn it never granted; a second copy of a takes the pinned path and reads the granted bytes.
    [Fact]
    public void A_grant_pinned_by_another_copy_call_keeps_its_frame_from_coming_back_at_another_gfn()
    {
        uint a = Grant(5);
        MachineFrameNumber frame = _front.Ram[5];
        var batch = default(GrantTableHost.CopyBatch);
        GnttabCopy held = FromGrant(a, 3);
        _m.Host.CopyInBatch(_back.Grant, ref held, ref batch);
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
}
