using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// What a guest can tell from one <see cref="GrantTableHost.Copy(GrantDomain, Span{GnttabCopy})"/> call must be what
/// Xen's gnttab_copy gives, one operation at a time, however the implementation orders its claims, copies and
/// releases (a design that claims several operations' grants before copying was measured, see the README): each
/// operation's own status, failed operations write nothing, bytes an operation wrote are what a later one reads, no
/// pin or GTF flag left behind, no grant pinned more often than one operation at a time pins it, and a grant ended or
/// a frame freed between two calls checked again by the next.
/// </summary>
public sealed class CopyCallTests : IDisposable
{
    private readonly TestMachine _m = new();
    private readonly TestDomain _front;
    private readonly TestDomain _back;
    private readonly InProcessGrantShare _share;

    public CopyCallTests()
    {
        _front = _m.AddDomain(1);
        _back = _m.AddDomain(2);
        _share = new InProcessGrantShare(_m.Host, _front.Grant);
        _front.RamPage(5).Fill(0x55);
        _front.RamPage(6).Fill(0x66);
        _front.RamPage(7).Fill(0x77);
    }

    public void Dispose() => _m.Dispose();

    private uint Grant(int gfn, bool readOnly = true)
    {
        Assert.True(_share.TryGrantForeignAccess(2, (ulong)gfn, readOnly, out uint gref));
        return gref;
    }

    private static GnttabCopy FromGrant(uint gref, ulong gmfn, ushort offset, ushort len = 16) => new()
    {
        Source = new() { Ref = gref, DomId = 1, Offset = offset },
        Dest = new() { Gmfn = gmfn, DomId = DomainId.Self, Offset = offset },
        Len = len,
        Flags = (ushort)GrantCopyFlags.SourceGref,
        Status = 99,
    };

    private static GnttabCopy ToGrant(ulong gmfn, uint gref, ushort offset, ushort len = 16) => new()
    {
        Source = new() { Gmfn = gmfn, DomId = DomainId.Self, Offset = offset },
        Dest = new() { Ref = gref, DomId = 1, Offset = offset },
        Len = len,
        Flags = (ushort)GrantCopyFlags.DestGref,
        Status = 99,
    };

    private static GnttabCopy Own(ulong from, ulong to, ushort offset, ushort len = 16) => new()
    {
        Source = new() { Gmfn = from, DomId = DomainId.Self, Offset = offset },
        Dest = new() { Gmfn = to, DomId = DomainId.Self, Offset = offset },
        Len = len,
        Status = 99,
    };

    private unsafe ushort EntryFlags(uint gref) =>
        *(ushort*)(_m.Memory.GetFramePointer(_front.Grant.GetSharedFrame(0)) + (gref * GrantEntryV1.Size));

    private void AssertReleased(params uint[] grefs)
    {
        foreach (uint gref in grefs)
        {
            Assert.Equal(0u, _front.Grant.GetPinCount(gref));
            Assert.Equal(0, EntryFlags(gref) & (ushort)(GrantEntryFlags.Reading | GrantEntryFlags.Writing));
        }
    }

    [Fact]
    public void Operations_alternating_between_two_grants_copy_in_order_and_leave_nothing_claimed()
    {
        uint a = Grant(5), b = Grant(6);
        var ops = new GnttabCopy[20];
        for (int k = 0; k < ops.Length; k++)
        {
            ops[k] = FromGrant(k % 2 == 0 ? a : b, 3, (ushort)(k * 16));
        }

        _m.Host.Copy(_back.Grant, ops);
        Assert.All(ops, op => Assert.Equal(0, op.Status));
        for (int k = 0; k < ops.Length; k++)
        {
            Assert.True(_back.RamPage(3).Slice(k * 16, 16).IndexOfAnyExcept(k % 2 == 0 ? (byte)0x55 : (byte)0x66) < 0, $"operation {k}");
        }

        AssertReleased(a, b);
        Assert.True(_share.EndForeignAccess(a));
        Assert.True(_share.EndForeignAccess(b));
    }

    [Fact]
    public void An_operation_reads_what_an_earlier_operation_of_the_call_wrote_through_a_grant_or_into_a_frame()
    {
        uint w = Grant(7, readOnly: false);
        _back.RamPage(9).Fill(0x99);
        GnttabCopy[] ops =
        [
            ToGrant(9, w, 0),          // backend frame 9 into the granted page
            FromGrant(w, 3, 0),        // and back out of it into frame 3
            Own(3, 4, 0),              // frame 3 into frame 4
            FromGrant(w, 4, 16),       // the granted page's untouched bytes
        ];
        _m.Host.Copy(_back.Grant, ops);
        Assert.All(ops, op => Assert.Equal(0, op.Status));
        Assert.Equal(0x99, _front.RamPage(7)[15]);
        Assert.True(_back.RamPage(3)[..16].IndexOfAnyExcept((byte)0x99) < 0);
        Assert.True(_back.RamPage(4)[..16].IndexOfAnyExcept((byte)0x99) < 0);
        Assert.True(_back.RamPage(4).Slice(16, 16).IndexOfAnyExcept((byte)0x77) < 0);
        AssertReleased(w);
    }

    [Fact]
    public void A_failing_operation_in_the_middle_of_a_call_gets_its_own_status_and_writes_nothing()
    {
        uint a = Grant(5), b = Grant(6);
        _back.RamPage(8).Fill(0x88);
        GnttabCopy[] ops =
        [
            FromGrant(a, 3, 0),
            FromGrant(999_999, 4, 0),             // no such grant
            FromGrant(a, 3, 16),
            ToGrant(8, a, 0),                     // writing through a read-only grant
            FromGrant(b, 4, 16),
            FromGrant(b, 4, 4090),                // beyond the page
            FromGrant(a, 4, 32),
        ];
        _m.Host.Copy(_back.Grant, ops);
        Assert.Equal([0, (short)GrantStatus.BadGntref, 0, (short)GrantStatus.GeneralError, 0, (short)GrantStatus.BadCopyArg, 0],
            ops.Select(o => o.Status));
        Assert.True(_back.RamPage(3)[..32].IndexOfAnyExcept((byte)0x55) < 0);
        Assert.True(_back.RamPage(4)[..16].IndexOfAnyExcept((byte)0) < 0);        // the failed operation's destination
        Assert.True(_front.RamPage(5).IndexOfAnyExcept((byte)0x55) < 0);           // the read-only grant's page
        Assert.True(_back.RamPage(4).Slice(16, 16).IndexOfAnyExcept((byte)0x66) < 0);
        Assert.True(_back.RamPage(4).Slice(32, 16).IndexOfAnyExcept((byte)0x55) < 0);
        Assert.True(_back.RamPage(4)[4090..].IndexOfAnyExcept((byte)0) < 0);
        AssertReleased(a, b);
    }

    [Fact]
    public void A_grant_ended_between_two_calls_fails_every_operation_of_the_second_call()
    {
        uint a = Grant(5);
        GnttabCopy[] first = [FromGrant(a, 3, 0), FromGrant(a, 3, 16), Own(6, 7, 0), FromGrant(a, 3, 32)];
        _m.Host.Copy(_back.Grant, first);
        Assert.All(first, op => Assert.Equal(0, op.Status));
        Assert.True(_share.EndForeignAccess(a));

        GnttabCopy[] second = [FromGrant(a, 4, 0), Own(6, 7, 16), FromGrant(a, 4, 16)];
        _m.Host.Copy(_back.Grant, second);
        Assert.Equal([(short)GrantStatus.GeneralError, 0, (short)GrantStatus.GeneralError], second.Select(o => o.Status));
        Assert.True(_back.RamPage(4)[..32].IndexOfAnyExcept((byte)0) < 0);
        AssertReleased(a);
    }

    [Fact]
    public void A_granted_frame_freed_between_two_calls_is_not_copied_from_by_the_second_call()
    {
        uint a = Grant(5);
        GnttabCopy[] first = [FromGrant(a, 3, 0), FromGrant(a, 3, 16)];
        _m.Host.Copy(_back.Grant, first);
        Assert.All(first, op => Assert.Equal(0, op.Status));

        // decrease_reservation by the granter, grant still in its table: the frame leaves the EPT and is freed.
        _front.Ept.Unmap(new GuestFrameNumber(5).Address, 1);
        GuestPhysicalMemory.InvalidateSingleContext(_m.Memory, _front.Ept.Pointer);
        Assert.True(_m.Frames.Free(_front.Ram[5]));

        GnttabCopy[] second = [FromGrant(a, 4, 0), FromGrant(a, 4, 16)];
        _m.Host.Copy(_back.Grant, second);
        Assert.Equal([(short)GrantStatus.BadPage, (short)GrantStatus.BadPage], second.Select(o => o.Status));
        Assert.True(_back.RamPage(4)[..32].IndexOfAnyExcept((byte)0) < 0);
        AssertReleased(a);
    }

    [Fact]
    public void Operations_naming_grants_or_frames_past_every_table_get_their_status_and_the_rest_still_copy()
    {
        // Pairs of operations naming one grant or frame, among them ones past every table: whatever an operation
        // names, only its own claim decides, with the checks of one operation at a time (a design that looks ahead at
        // later operations, to prefetch what their claims read, must keep this).
        uint a = Grant(5);
        GnttabCopy[] ops =
        [
            FromGrant(a, 3, 0),
            FromGrant(a, 3, 16),
            FromGrant(uint.MaxValue, 3, 32),
            FromGrant(a, 3, 48),
            FromGrant(a, 3, 64),
            Own(ulong.MaxValue, 4, 0),
            Own(ulong.MaxValue, 4, 16),
            FromGrant(a, 3, 80),
            FromGrant(a, 3, 96),
            new() { Source = new() { Ref = a, DomId = 1 }, Dest = new() { Ref = uint.MaxValue, DomId = 1 }, Len = 16, Flags = (ushort)(GrantCopyFlags.SourceGref | GrantCopyFlags.DestGref) },
            new() { Source = new() { Ref = a, DomId = 1 }, Dest = new() { Ref = uint.MaxValue, DomId = 1 }, Len = 16, Flags = (ushort)(GrantCopyFlags.SourceGref | GrantCopyFlags.DestGref) },
            FromGrant(a, 3, 112),
            FromGrant(a, 3, 128),
            new() { Source = new() { Ref = a, DomId = 77 }, Dest = new() { Gmfn = 4, DomId = DomainId.Self }, Len = 16, Flags = (ushort)GrantCopyFlags.SourceGref },
            FromGrant(a, 3, 144),
        ];
        _m.Host.Copy(_back.Grant, ops);
        short bad = (short)GrantStatus.BadGntref, page = (short)GrantStatus.BadPage, dom = (short)GrantStatus.BadDomain;
        Assert.Equal([0, 0, bad, 0, 0, page, page, 0, 0, bad, bad, 0, 0, dom, 0], ops.Select(o => o.Status));
        Assert.True(_back.RamPage(3)[..32].IndexOfAnyExcept((byte)0x55) < 0);
        Assert.True(_back.RamPage(3)[32..48].IndexOfAnyExcept((byte)0) < 0);
        Assert.True(_back.RamPage(3)[48..160].IndexOfAnyExcept((byte)0x55) < 0);
        Assert.True(_back.RamPage(4)[..32].IndexOfAnyExcept((byte)0) < 0);
        AssertReleased(a);
    }

    [Fact]
    public void A_grant_named_again_after_the_call_moved_on_from_it_is_pinned_no_more_than_one_operation_at_a_time_pins_it()
    {
        // A grant pinned 127 times by read-only mappings has one pin left before Xen's overflow guard (pin & 0x80)
        // refuses it. One operation at a time pins it once at most; a call that kept it pinned when moving to another
        // grant and pinned it again when coming back would hit the guard.
        uint a = Grant(5), b = Grant(6);
        for (int i = 0; i < 127; i++)
        {
            Assert.Equal(0, _m.MapGrant(_back, 1, a, (ulong)(100 + i), readOnly: true).Status);
        }

        var ops = new GnttabCopy[16];
        for (int k = 0; k < ops.Length; k++)
        {
            ops[k] = FromGrant(k % 2 == 0 ? a : b, 3, (ushort)(k * 16));
        }

        _m.Host.Copy(_back.Grant, ops);
        Assert.All(ops, op => Assert.Equal(0, op.Status));
        Assert.Equal(127u << 8, _front.Grant.GetPinCount(a));
        Assert.Equal(0u, _front.Grant.GetPinCount(b));
    }
}
