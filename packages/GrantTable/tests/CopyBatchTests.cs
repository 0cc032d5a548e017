using System.Runtime.InteropServices;
using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// A grant kept claimed across the operations of one <c>GNTTABOP_copy</c> call (Xen's gnttab_copy caches its source and
/// destination buffer between operations: gnttab_copy_buf_valid): what the granter sees meanwhile, and what happens
/// when the grant is revoked, its frame freed or its domain destroyed between two operations of one call. The
/// dispatcher's preemption hook runs between two operations, so the tests act there.
/// </summary>
public sealed class CopyBatchTests : IDisposable
{
    private const ulong Buffer = 20UL << 12;   // guest-physical buffer in the caller's RAM (paging off)
    private const int OpSize = 40;             // sizeof(struct gnttab_copy), 64-bit
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

    public CopyBatchTests()
    {
        _front = _m.AddDomain(1);
        _back = _m.AddDomain(2);
        _share = new InProcessGrantShare(_m.Host, _front.Grant);
        new GrantTableHypercalls<TestDomain>(_m.Host, new Resolver()).Register(_dispatcher);
        _front.RamPage(5).Fill(0x55);
        _front.RamPage(6).Fill(0x66);
    }

    public void Dispose() => _m.Dispose();

    private uint Grant(int gfn)
    {
        Assert.True(_share.TryGrantForeignAccess(2, (ulong)gfn, readOnly: true, out uint gref));
        return gref;
    }

    private static GnttabCopy FromGrant(uint gref, ulong gmfn, ushort offset = 0) => new()
    {
        Source = new() { Ref = gref, DomId = 1, Offset = offset },
        Dest = new() { Gmfn = gmfn, DomId = DomainId.Self, Offset = offset },
        Len = 16,
        Flags = (ushort)GrantCopyFlags.SourceGref,
        Status = 99,
    };

    /// <summary>Runs the operations as one hypercall of the backend; <paramref name="between"/>(i) runs before operation i (i ≥ 1).</summary>
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

    private unsafe ushort EntryFlags(uint gref) =>
        *(ushort*)(_m.Memory.GetFramePointer(_front.Grant.GetSharedFrame(0)) + (gref * GrantEntryV1.Size));

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
    public unsafe void A_grant_entry_cleared_behind_the_holders_back_is_honoured_until_the_call_ends_as_in_Xen()
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
        var map = new GnttabMapGrantRef { HostAddr = 40UL << 12, Flags = (uint)(GrantMapFlags.HostMap | GrantMapFlags.ReadOnly), Ref = a, Dom = 1 };
        _m.Host.MapGrantRef(_back.Grant, ref map); // the mapping holds a reference on the frame
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
}
