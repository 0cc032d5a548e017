using VmmKit.Ept;

namespace VmmKit.GrantTable.Tests;

/// <summary><see cref="FrameReferences"/>' public counts, as a hypervisor uses them beside the grant tables.</summary>
public sealed class FrameReferencesTests : IDisposable
{
    private readonly TestMachine _m = new();

    public void Dispose() => _m.Dispose();

    [Fact]
    public void TryAcquire_takes_a_reference_only_on_a_live_frame_of_the_named_owner()
    {
        // Xen's get_page(page, d): the owner is checked and the reference taken in one step.
        MachineFrameNumber frame = _m.Memory.AllocateFrame(new FrameOwner(1));
        Assert.False(_m.Frames.TryAcquire(frame, new FrameOwner(2)));
        Assert.Equal(0, _m.Frames.ReferenceCount(frame));
        Assert.False(_m.Frames.TryAcquire(new MachineFrameNumber(_m.Memory.FrameCount + 5), new FrameOwner(1)));

        Assert.True(_m.Frames.TryAcquire(frame, new FrameOwner(1)));
        Assert.Equal(1, _m.Frames.ReferenceCount(frame));

        Assert.False(_m.Frames.Free(frame));                                 // deferred: referenced
        Assert.False(_m.Frames.TryAcquire(frame, new FrameOwner(1)));        // its free is pending
        Assert.Equal(1, _m.Frames.ReferenceCount(frame));

        _m.Frames.Release(frame);                                            // the last reference frees it
        Assert.False(_m.Memory.TryGetOwner(frame, out _));
        Assert.False(_m.Frames.TryAcquire(frame, new FrameOwner(1)));        // free
    }
}
