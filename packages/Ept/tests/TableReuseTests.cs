using VmmKit.Ept;

namespace VmmKit.Ept.Tests;

/// <summary>
/// Table frames retired by an unmap come back after an invalidation of any kind, so a guest that moves one page back
/// and forth (XENMEM_add_to_physmap ping-pong, issue 10 item 1) cannot exhaust its quota.
/// </summary>
public sealed class TableReuseTests
{
    private static readonly FrameOwner Dom1 = new(1);
    private static readonly GuestPhysicalAddress Low = new(0x40000UL << Page.PageShift);
    private static readonly GuestPhysicalAddress High = new(0x80000000UL << Page.PageShift);

    private static void PingPong(MachineMemory memory, EptTables ept, MachineFrameNumber frame, int rounds, Action invalidate)
    {
        var at = Low;
        ept.Map(at, frame, 1, EptAccess.Read | EptAccess.Write);
        for (int i = 0; i < rounds; i++)
        {
            var next = at == Low ? High : Low;
            ept.Unmap(at, 1);
            ept.Map(next, frame, 1, EptAccess.Read | EptAccess.Write);
            invalidate();
            at = next;
        }
    }

    [Fact]
    public void Single_context_invalidation_of_one_accessor_lets_retired_tables_be_reused()
    {
        using var memory = new MachineMemory(16UL << 20);
        memory.SetLimit(Dom1, 12);
        using var ept = new EptTables(memory, Dom1);
        var frame = memory.AllocateFrame(Dom1);
        var vcpu = new GuestPhysicalMemory(memory, ept.Pointer);
        PingPong(memory, ept, frame, 1000, vcpu.InvalidateSingleContext);
        Assert.True(memory.FramesOwnedBy(Dom1) <= 12);
        Assert.Equal(4UL, ept.TableFrameCount); // root + the three tables of the current mapping
    }

    [Fact]
    public void Single_context_invalidation_of_every_accessor_lets_retired_tables_be_reused()
    {
        using var memory = new MachineMemory(16UL << 20);
        memory.SetLimit(Dom1, 12);
        using var ept = new EptTables(memory, Dom1);
        var frame = memory.AllocateFrame(Dom1);
        PingPong(memory, ept, frame, 1000, () => GuestPhysicalMemory.InvalidateSingleContext(memory, ept.Pointer));
        Assert.True(memory.FramesOwnedBy(Dom1) <= 12);
    }

    [Fact]
    public void Without_an_invalidation_retired_tables_are_not_reused_and_the_owner_limit_holds()
    {
        using var memory = new MachineMemory(16UL << 20);
        memory.SetLimit(Dom1, 12);
        using var ept = new EptTables(memory, Dom1);
        var frame = memory.AllocateFrame(Dom1);
        Assert.Throws<MachineMemoryExhaustedException>(() => PingPong(memory, ept, frame, 1000, () => { }));
        Assert.Equal(12UL, memory.FramesOwnedBy(Dom1));
        // One invalidation later, the retired frames serve new tables again.
        new GuestPhysicalMemory(memory, ept.Pointer).InvalidateSingleContext();
        ept.Map(new GuestPhysicalAddress(0x1234UL << 30), frame, 1, EptAccess.Read);
    }
}
