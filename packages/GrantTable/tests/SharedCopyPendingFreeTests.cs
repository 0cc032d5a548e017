using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// Copies sharing a granter's copy word (GrantTableHost.Exclusion.cs) while the granter frees a frame another copy call
/// keeps claimed: the frame stays allocated while any claim pins its grant.
/// </summary>
public sealed class SharedCopyPendingFreeTests : IDisposable
{
    private readonly TestMachine _m = new();
    private readonly TestDomain _front;
    private readonly TestDomain _back;
    private readonly HypercallDispatcher<TestDomain> _dispatcher = new();
    private readonly InProcessGrantShare _share;

    public SharedCopyPendingFreeTests()
    {
        _front = _m.AddDomain(1);
        _back = _m.AddDomain(2);
        _share = new InProcessGrantShare(_m.Host, _front.Grant);
        new GrantTableHypercalls<TestDomain>(_m.Host, new TestResolver()).Register(_dispatcher);
        _front.RamPage(5).Fill(0x55);
        _front.RamPage(6).Fill(0x66);
    }

    public void Dispose() => _m.Dispose();

    [Fact]
    public void A_claim_made_on_another_calls_pin_keeps_the_frame_when_that_call_lets_go_of_the_last_reference()
    {
        Assert.True(_share.TryGrantForeignAccess(2, 5, readOnly: true, out uint a));
        Assert.True(_share.TryGrantForeignAccess(2, 6, readOnly: true, out uint b));
        MachineFrameNumber frame = _front.Ram[5];
        _front.Grant.CopiesShare = 1; // the backend's copies of d1's grants share d1's word (two queues met)

        // Call B (one vCPU of the backend, between two holds) keeps grant a claimed, with a reference on its frame.
        var batchB = default(GrantTableHost.CopyBatch);
        GnttabCopy first = Op(a, 3);
        Assert.Equal(1, _m.Host.CopyHeldRun(_back.Grant, new Span<GnttabCopy>(ref first), ref batchB, endsBatch: false));

        // The granter frees the frame: deferred, B's claim references it.
        _front.Ept.Unmap(new GuestFrameNumber(5).Address, 1);
        GuestPhysicalMemory.InvalidateSingleContext(_m.Memory, _front.Ept.Pointer);
        Assert.False(_m.Frames.Free(frame));

        // Call A (another vCPU) claims a on top of B's pin and stays in its hold (its status write waits).
        using var inHold = new ManualResetEventSlim();
        using var letGo = new ManualResetEventSlim();
        var view = new StatusWriteGate(_back.Virtual, inHold, letGo);
        var callA = new Thread(() => CopyHypercall.Invoke(_dispatcher, _back, [Op(a, 4)], view));
        callA.Start();
        Assert.True(inHold.Wait(TimeSpan.FromSeconds(30)));
        Assert.Equal(2 * ActiveGrantEntry.HostReadIncrement, _front.Grant.GetPinCount(a));

        // B moves on to grant b in a hold beside A's: it releases a and its reference.
        GnttabCopy second = Op(b, 3);
        Assert.Equal(1, _m.Host.CopyHeldRun(_back.Grant, new Span<GnttabCopy>(ref second), ref batchB, endsBatch: true));
        bool stillAllocated = _m.Memory.TryGetOwner(frame, out FrameOwner owner);
        uint pin = _front.Grant.GetPinCount(a);

        letGo.Set();
        Assert.True(callA.Join(TimeSpan.FromSeconds(30)));

        Assert.Equal(ActiveGrantEntry.HostReadIncrement, pin); // A's claim still pins a...
        Assert.True(stillAllocated, "the frame of a grant A's claim pins was freed under it"); // ...so its frame stays
        Assert.Equal(1, owner.DomainId);
        Assert.False(_m.Memory.TryGetOwner(frame, out _)); // freed once A let go
        Assert.Equal(0u, _front.Grant.GetPinCount(a));
        Assert.Equal(0, _m.Frames.ReferenceCount(frame));
        Assert.Equal(0, _m.Frames.PendingFreeCount);
    }

    private static GnttabCopy Op(uint gref, ulong into) => new()
    {
        Source = new() { Ref = gref, DomId = 1 },
        Dest = new() { Gmfn = into, DomId = DomainId.Self },
        Len = 64,
        Flags = (ushort)GrantCopyFlags.SourceGref,
    };
}
