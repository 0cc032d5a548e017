using VmmKit.Ept;

namespace VmmKit.Ept.Tests;

public sealed unsafe class MachineMemoryTests
{
    private static readonly FrameOwner Dom1 = new(1);
    private static readonly FrameOwner Dom2 = new(2);

    [Fact]
    public void A_64_GiB_machine_is_reserved_without_committing_it()
    {
        using var memory = new MachineMemory(64UL << 30);
        Assert.Equal(16UL << 20, memory.FrameCount);
        Assert.Equal(memory.FrameCount, memory.FreeFrames);
        MachineFrameNumber last = new(memory.FrameCount - 1);
        memory.GetFrame(last)[4095] = 0xAB; // touching one frame commits only that frame
        Assert.Equal(0xAB, memory.GetFrame(last)[4095]);
    }

    [Fact]
    public void Allocation_accounts_frames_to_owners()
    {
        using var memory = new MachineMemory(1 << 20);
        MachineFrameNumber a = memory.AllocateFrame(Dom1);
        MachineFrameNumber b = memory.AllocateFrame(Dom2);
        Assert.NotEqual(a, b);
        Assert.Equal(1UL, memory.FramesOwnedBy(Dom1));
        Assert.Equal(1UL, memory.FramesOwnedBy(Dom2));
        Assert.Equal(254UL, memory.FreeFrames);
        Assert.True(memory.TryGetOwner(a, out FrameOwner owner));
        Assert.Equal(Dom1, owner);
        memory.FreeFrame(a);
        Assert.False(memory.TryGetOwner(a, out _));
        Assert.Equal(0UL, memory.FramesOwnedBy(Dom1));
        Assert.Throws<InvalidOperationException>(() => memory.FreeFrame(a));
    }

    [Fact]
    public void Frames_are_zeroed_before_reuse()
    {
        using var memory = new MachineMemory(64 * 4096);
        var frames = new List<MachineFrameNumber>();
        while (memory.TryAllocateFrame(Dom1, out MachineFrameNumber f))
        {
            memory.GetFrame(f).Fill(0x5A);
            frames.Add(f);
        }

        Assert.Equal(64, frames.Count);
        foreach (MachineFrameNumber f in frames)
        {
            memory.FreeFrame(f);
        }

        MachineFrameNumber run = memory.AllocateContiguous(Dom2, 64);
        for (ulong i = 0; i < 64; i++)
        {
            Assert.True(memory.GetFrame(run + i).IndexOfAnyExcept((byte)0) < 0);
        }

        memory.GetFrame(run).Fill(1);
        memory.FreeContiguous(run, 64); // large run: returned to the host with madvise
        Assert.True(memory.GetFrame(memory.AllocateFrame(Dom1)).IndexOfAnyExcept((byte)0) < 0);
    }

    [Fact]
    public void Exhaustion_and_limits_throw_a_clear_error()
    {
        using var memory = new MachineMemory(8 * 4096);
        memory.SetLimit(Dom1, 2);
        memory.AllocateFrame(Dom1);
        memory.AllocateFrame(Dom1);
        MachineMemoryExhaustedException e = Assert.Throws<MachineMemoryExhaustedException>(() => memory.AllocateFrame(Dom1));
        Assert.Equal(Dom1, e.Owner);
        Assert.Contains("d1", e.Message, StringComparison.Ordinal);
        Assert.False(memory.TryAllocateFrame(Dom1, out _));
        Assert.Throws<MachineMemoryExhaustedException>(() => memory.AllocateContiguous(Dom2, 7));
        memory.AllocateContiguous(Dom2, 6);
        Assert.Equal(0UL, memory.FreeFrames);
        Assert.Throws<MachineMemoryExhaustedException>(() => memory.AllocateFrame(Dom2));
    }

    [Fact]
    public void Contiguous_runs_honour_alignment()
    {
        using var memory = new MachineMemory(4UL << 20);
        memory.AllocateFrame(Dom1);
        MachineFrameNumber run = memory.AllocateContiguous(Dom1, 512, 512);
        Assert.Equal(0UL, run.Value % 512);
        Assert.Equal(513UL, memory.FramesOwnedBy(Dom1));
        Assert.Throws<ArgumentOutOfRangeException>(() => memory.AllocateContiguous(Dom1, 1, 3));
    }

    [Fact]
    public void Invalid_frames_and_machine_addresses_are_rejected()
    {
        using var memory = new MachineMemory(16 * 4096);
        Assert.False(memory.IsValid(new MachineFrameNumber(16)));
        Assert.Throws<ArgumentOutOfRangeException>(() => memory.GetFrame(new MachineFrameNumber(16)).Length);
        Span<byte> buffer = stackalloc byte[8];
        Assert.True(memory.TryReadMachinePhysical((16 * 4096) - 8, buffer));
        Assert.False(memory.TryReadMachinePhysical((16 * 4096) - 7, buffer));
        Assert.False(memory.TryReadMachinePhysical(ulong.MaxValue - 2, buffer));
        Assert.True(memory.TryWriteMachinePhysical(4096, [1, 2, 3]));
        Assert.Equal(2, memory.GetFrame(new MachineFrameNumber(1))[1]);
    }

    [Fact]
    public void Hypervisor_owner_is_DOMID_XEN()
    {
        Assert.Equal((ushort)0x7FF2, FrameOwner.Hypervisor.DomainId);
        Assert.Equal("DOMID_XEN", FrameOwner.Hypervisor.ToString());
        Assert.Equal("d3", new FrameOwner(3).ToString());
    }

    [Fact]
    public void Sizes_outside_the_supported_range_are_rejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new MachineMemory(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new MachineMemory(MachineMemory.MaxSizeInBytes + 4096));
        using var odd = new MachineMemory(4097);
        Assert.Equal(2UL, odd.FrameCount);
    }

    [Fact]
    public void After_dispose_guest_accesses_fail_instead_of_touching_the_old_mapping()
    {
        var memory = new MachineMemory(1UL << 20);
        var ept = new EptTables(memory, Dom1);
        ept.Map(default, memory.AllocateFrame(Dom1), 1, EptAccess.Read);
        var guest = new GuestPhysicalMemory(memory, ept.Pointer);
        Assert.True(guest.TryRead(default, out ulong _)); // now cached
        memory.Dispose();
        Assert.False(guest.TryRead(default, out ulong _, out GuestMemoryFault fault));
        Assert.Equal(EptTranslationStatus.Misconfiguration, fault.Status);
        Assert.False(memory.IsValid(default));
        Assert.False(memory.TryReadMachinePhysical(0, new byte[1]));
    }
}
