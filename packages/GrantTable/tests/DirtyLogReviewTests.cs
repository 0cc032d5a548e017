using System.Runtime.InteropServices;
using VmmKit.Ept;
using VmmKit.Hypercall;
using static VmmKit.GrantTable.Tests.GuestValues;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// Review of dirty marking (Xen's <c>gnttab_mark_dirty</c>) where <see cref="DirtyLogTests"/> does not reach: the
/// 32-bit copy path, pins made and joined by other paths (the gfn marked is the one the first pin resolved, the frame
/// written), copies within one domain, unmaps that leave the mapping in place (<c>unmap_common</c> marks on every
/// <c>GNTST_okay</c> of a writable mapping), a granter's EPT disposed while it logs, and copies racing with harvests
/// (a frame's last contents must be reported by some harvest after the write).
/// </summary>
public sealed unsafe class DirtyLogReviewTests : DirtyLogFixture
{
    // GNTTABOP_copy from a 32-bit caller (compat_gnttab_copy, 24 bytes an operation) at Buffer.
    private short[] CallCompat(GnttabCopy[] ops)
    {
        for (int i = 0; i < ops.Length; i++)
        {
            GnttabCopy o = ops[i];
            Put(_back, Buffer + ((ulong)i * 24), new CompatGnttabCopy
            {
                Source = new() { Gmfn = (uint)o.Source.Gmfn, DomId = o.Source.DomId, Offset = o.Source.Offset },
                Dest = new() { Gmfn = (uint)o.Dest.Gmfn, DomId = o.Dest.DomId, Offset = o.Dest.Offset },
                Len = o.Len,
                Flags = o.Flags,
                Status = 99,
            });
        }

        Assert.Equal(0, GrantTableCall.Invoke(_dispatcher, _back, (ulong)GrantTableOp.Copy, Buffer, (ulong)ops.Length, HypercallAbi.Compat32, out _));
        return [.. Enumerable.Range(0, ops.Length).Select(i => Get<CompatGnttabCopy>(_back, Buffer + ((ulong)i * 24)).Status)];
    }

    private void SetEntryFrame(uint gref, uint gfn) =>
        ((GrantEntryV1*)_memory.GetFramePointer(_front.Grant.GetSharedFrame(0)) + gref)->Frame = gfn;

    [Fact]
    public void A_32_bit_callers_copies_mark_every_destination()
    {
        uint a = Grant(5);
        uint b = Grant(6, readOnly: true);
        StartLog(_front, _back);

        short[] st = CallCompat([ToGrant(3, a), FromGrant(b, 8), Frames(3, 9), ToGrant(3, 4000), ToGrant(4, a, offset: 64)]);

        Assert.Equal([0, 0, 0, (short)GrantStatus.BadGntref, 0], st);
        Assert.Equal([5UL], Dirty(_front));
        Assert.Equal([8UL, 9UL], DirtyBesidesBuffer(_back));
    }

    [Fact]
    public void A_32_bit_callers_copies_reusing_a_held_claim_mark_again_after_a_harvest_between_holds()
    {
        // With a preemption hook each operation of the translated chunk runs in a hold of its own, the claim kept
        // across; the hook harvests, so each later operation must mark anew.
        uint a = Grant(5);
        StartLog(_front);
        var front = new List<ulong[]>();
        _dispatcher.PreemptCheck = _ =>
        {
            front.Add(Dirty(_front));
            return false;
        };

        short[] st = CallCompat([ToGrant(3, a), ToGrant(3, a, offset: 8), ToGrant(3, a, offset: 16)]);
        _dispatcher.PreemptCheck = null;
        front.Add(Dirty(_front));

        Assert.Equal([0, 0, 0], st);
        Assert.Equal([[5UL], [5UL], [5UL]], front);
    }

    [Fact]
    public void A_writable_copy_joining_a_read_only_maps_pin_marks_the_frame_that_pin_resolved_which_it_writes()
    {
        // The copy takes the writable upgrade of an existing pin (acquire_grant_for_copy's second branch): it writes
        // act->mfn, the frame gfn 5 held when the map pinned the grant, although the entry names gfn 7 now.
        uint gref = Grant(5);
        GnttabMapGrantRef m = Map(gref, readOnly: true);
        SetEntryFrame(gref, 7);
        StartLog(_front, _back);

        Assert.Equal([0], Run(ToGrant(3, gref)));

        Assert.Equal(0x13, _front.RamPage(5)[0]);
        Assert.Equal(0x17, _front.RamPage(7)[0]);
        Assert.Equal([5UL], Dirty(_front));
        Assert.Equal(0, Unmap(m.Handle));
        Assert.Empty(Dirty(_front)); // a read-only mapping's unmap marks nothing
    }

    [Fact]
    public void A_map_pinning_after_a_copys_pin_ended_marks_the_frame_its_own_pin_resolved()
    {
        // The copy's pin recorded gfn 5 and ended; the granter then pointed the entry at gfn 7, so the map's first pin
        // resolves and records gfn 7 (not the gfn a pin before it left behind).
        uint gref = Grant(5);
        StartLog(_front);
        Assert.Equal([0], Run(ToGrant(3, gref)));
        Assert.Equal([5UL], Dirty(_front));
        SetEntryFrame(gref, 7);

        GnttabMapGrantRef m = Map(gref, readOnly: false);
        Assert.True(_back.TryWrite(MapGfn << 12, [1, 2, 3]));
        Assert.Equal(0, Unmap(m.Handle));

        Assert.Equal(1, _front.RamPage(7)[0]);
        Assert.Equal([7UL], Dirty(_front));
    }

    [Fact]
    public void A_copy_on_the_general_path_after_a_maps_pin_ended_marks_the_frame_its_own_pin_resolved()
    {
        // The same through acquire_grant_for_copy (both sides grants, so not the backend's fast path).
        uint from = Grant(6, readOnly: true);
        uint to = Grant(5);
        GnttabMapGrantRef m = Map(to, readOnly: false);
        Assert.Equal(0, Unmap(m.Handle));
        SetEntryFrame(to, 9);
        StartLog(_front);

        Assert.Equal([0], Run(GrantToGrant(1, from, 1, to)));

        Assert.Equal(0x16, _front.RamPage(9)[0]);
        Assert.Equal([9UL], Dirty(_front));
    }

    [Fact]
    public void A_copy_within_one_domain_marks_its_destination_in_that_domain()
    {
        // Both sides grants of the granter, and a grant of the caller's own named through DOMID_SELF.
        uint from = Grant(6, readOnly: true);
        uint to = Grant(12);
        var ownShare = new InProcessGrantShare(_host, _back.Grant);
        Assert.True(ownShare.TryGrantForeignAccess(2, 14, readOnly: false, out uint own));
        StartLog(_front, _back);

        Assert.Equal([0], Run(GrantToGrant(1, from, 1, to)));
        Assert.Equal([12UL], Dirty(_front));
        Assert.Empty(DirtyBesidesBuffer(_back));

        Assert.Equal([0], Run(ToGrant(3, own, dom: DomainId.Self)));
        Assert.Equal([14UL], Dirty(_back));
        Assert.Empty(Dirty(_front));
    }

    [Fact]
    public void An_unmap_naming_no_host_address_marks_a_writable_mappings_frame_as_unmap_common()
    {
        // unmap_common: with host_addr 0 nothing is undone, the status is GNTST_okay, and "if just unmapped a writable
        // mapping, mark as dirtied" runs on rc == GNTST_okay && !(flags & GNTMAP_readonly), whatever was undone.
        uint w = Grant(5);
        uint r = Grant(6, readOnly: true);
        GnttabMapGrantRef mw = Map(w, readOnly: false, MapGfn);
        GnttabMapGrantRef mr = Map(r, readOnly: true, MapGfn + 1);
        StartLog(_front);
        Assert.True(_back.TryWrite(MapGfn << 12, [7, 7, 7]));

        var op = new GnttabUnmapGrantRef { HostAddr = 0, Handle = mw.Handle, Status = 99 };
        _host.UnmapGrantRef(_back.Grant, ref op);
        var ro = new GnttabUnmapGrantRef { HostAddr = 0, Handle = mr.Handle, Status = 99 };
        _host.UnmapGrantRef(_back.Grant, ref ro);

        Assert.Equal(0, op.Status);
        Assert.Equal(0, ro.Status);
        Assert.Equal(2, _back.Grant.MappingCount); // both mappings stay
        Assert.Equal([5UL], Dirty(_front));
    }

    [Fact]
    public void Unmaps_releases_and_held_copies_after_the_granters_EPT_was_disposed_while_logging_throw_nothing()
    {
        // A VMM that tore the granter's EPT down while its log ran (the wrong order): the marks find no tables and
        // do nothing, rather than throwing ObjectDisposedException through the grantee's operations.
        uint a = Grant(5);
        uint b = Grant(6);
        uint c = Grant(7);
        GnttabMapGrantRef ma = Map(a, readOnly: false, MapGfn);
        Map(b, readOnly: false, MapGfn + 1);
        StartLog(_front);

        short[] st = CopyHypercall.Run(_dispatcher, _back, [ToGrant(3, c), ToGrant(3, c, offset: 8)], _ => _front.Ept.Dispose());

        Assert.Equal([0, 0], st);
        Assert.Equal(0x13, _front.RamPage(7)[8]);
        Assert.Null(Record.Exception(() => Assert.Equal(0, Unmap(ma.Handle))));
        Assert.Equal(1, _host.ReleaseMappings(_back.Grant));
        Assert.Equal(0u, _front.Grant.GetPinCount(a) | _front.Grant.GetPinCount(b) | _front.Grant.GetPinCount(c));
    }

    [Fact]
    public void Every_frame_copies_write_while_another_thread_harvests_ends_up_harvested_with_its_last_contents()
    {
        // A migration's view: each harvest "sends" the dirty frames' contents; once the copies stop and a last harvest
        // ran, what was sent last for every frame must be what it holds. A mark before its write, or a missing mark,
        // leaves a frame whose last write no harvest reported. Two callers copy into grants of one granter at once
        // (their copies share the granter's copy word): one through the API, one through the hypercall, whose claims
        // outlive its holds. Each frame is written in two halves, the second by the fast path of a batch holding both.
        const int perCaller = 8;
        const int rounds = 1000;
        TestDomain other = AddDomain(3);
        var grefs = new uint[2][];
        grefs[0] = [.. Enumerable.Range(30, perCaller).Select(g => Grant(g))];
        grefs[1] = [.. Enumerable.Range(30 + perCaller, perCaller).Select(g => Grant(g, to: 3))];
        StartLog(_front);
        var sent = new ulong[RamFrames];
        for (int f = 0; f < RamFrames; f++)
        {
            sent[f] = MemoryMarshal.Read<ulong>(_front.RamPage(f));
        }

        using var stop = new CancellationTokenSource();
        var errors = new List<Exception>();
        var harvester = new Thread(() =>
        {
            try
            {
                while (!stop.IsCancellationRequested)
                {
                    Send(sent);
                }
            }
            catch (Exception e)
            {
                lock (errors)
                {
                    errors.Add(e);
                }
            }
        });
        var api = new Thread(() => Guard(errors, () =>
        {
            for (ulong n = 1; n <= rounds; n++)
            {
                MemoryMarshal.Write(_back.RamPage(3), n << 32 | n);
                GnttabCopy[] ops = [.. grefs[0].SelectMany(g => new[] { ToGrant(3, g, len: 4), ToGrant(3, g, len: 4, offset: 4) })];
                _host.Copy(_back.Grant, ops.AsSpan());
                Assert.All(ops, o => Assert.Equal(0, o.Status));
            }
        }));
        var hypercall = new Thread(() => Guard(errors, () =>
        {
            for (ulong n = 1; n <= rounds; n++)
            {
                MemoryMarshal.Write(other.RamPage(3), (n << 32 | n) << 8);
                GnttabCopy[] ops = [.. grefs[1].SelectMany(g => new[] { ToGrant(3, g, len: 4), ToGrant(3, g, len: 4, offset: 4) })];
                CopyHypercall.Invoke(_dispatcher, other, ops);
                Assert.All(ops, o => Assert.Equal(0, o.Status));
            }
        }));
        harvester.Start();
        api.Start();
        hypercall.Start();
        api.Join();
        hypercall.Join();
        stop.Cancel();
        harvester.Join();
        Send(sent);

        Assert.Empty(errors);
        for (int f = 0; f < RamFrames; f++)
        {
            Assert.True(sent[f] == MemoryMarshal.Read<ulong>(_front.RamPage(f)), $"gfn {f}: sent {sent[f]:x}, holds {MemoryMarshal.Read<ulong>(_front.RamPage(f)):x}");
        }

        Assert.Equal((ulong)rounds << 32 | rounds, MemoryMarshal.Read<ulong>(_front.RamPage(30)));
        Assert.Equal(((ulong)rounds << 32 | rounds) << 8, MemoryMarshal.Read<ulong>(_front.RamPage(30 + perCaller)));

        void Send(ulong[] to)
        {
            foreach (ulong f in Dirty(_front))
            {
                if (f < RamFrames)
                {
                    to[f] = MemoryMarshal.Read<ulong>(_front.RamPage((int)f));
                }
            }
        }
    }

    private static void Guard(List<Exception> errors, Action body)
    {
        try
        {
            body();
        }
        catch (Exception e)
        {
            lock (errors)
            {
                errors.Add(e);
            }
        }
    }
}
