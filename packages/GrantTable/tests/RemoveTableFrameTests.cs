using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary><see cref="GrantTableHost.RemoveTableFrame"/>: XENMEM_remove_from_physmap of a grant-table frame.</summary>
public sealed class RemoveTableFrameTests : IDisposable
{
    private readonly TestMachine _m = new();
    private readonly TestDomain _front;

    public RemoveTableFrameTests() => _front = _m.AddDomain(1);

    public void Dispose() => _m.Dispose();

    [Fact]
    public void A_table_frame_leaves_its_gfn_and_can_be_placed_again()
    {
        var gfn = new GuestFrameNumber(0x3000);
        Assert.Equal(0, _m.Host.AddToPhysmap(_front.Grant, 0, gfn));
        Assert.Equal(0, _m.Host.RemoveTableFrame(_front.Grant, gfn));
        Assert.False(_front.Ept.TryLookup(gfn, out _, out _));
        Assert.Equal(XenErrno.ENOENT.Negated(), _m.Host.RemoveTableFrame(_front.Grant, gfn));

        Span<ulong> frames = stackalloc ulong[1];
        Assert.Equal(GrantStatus.Okay, _m.Host.SetupTable(_front.Grant, false, DomainId.Self, 1, frames));
        Assert.Equal(GrantTableHost.InvalidFrame, frames[0]);

        // Placed at the same gfn again: mapped again (the removal left no stale record of the old place).
        Assert.Equal(0, _m.Host.AddToPhysmap(_front.Grant, 0, gfn));
        Assert.True(_front.Ept.TryLookup(gfn, out MachineFrameNumber f, out _));
        Assert.Equal(_front.Grant.GetSharedFrame(0), f);
    }

    [Fact]
    public void A_ram_gfn_is_not_the_tables_to_remove()
    {
        var ram = new GuestFrameNumber(10);
        Assert.Equal(XenErrno.ENOENT.Negated(), _m.Host.RemoveTableFrame(_front.Grant, ram));
        Assert.True(_front.Ept.TryLookup(ram, out _, out _));
    }
}
