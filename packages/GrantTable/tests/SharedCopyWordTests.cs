using System.Runtime.InteropServices;
using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// Copies of one granter's grants on several threads (a frontend's queues, each served on its own thread): a copy holds
/// the granter's copy word alone while no other copy wants it; a copy that finds it held makes the granter's copies
/// share it from then on (each claim and release then locks the grant's active entry), and a thread that has shared it
/// for <see cref="CopySlot.ShareCalls"/> calls lets copies take it alone again. A copy taking the word alone never runs
/// beside one that shares it. (GrantTableHost.Exclusion.cs.)
/// </summary>
public sealed class SharedCopyWordTests : IDisposable
{
    private readonly TestMachine _m = new();
    private readonly TestDomain _front;
    private readonly TestDomain _back;
    private readonly uint[] _refs = new uint[2];
    private readonly HypercallDispatcher<TestDomain> _dispatcher = new();

    public SharedCopyWordTests()
    {
        _front = _m.AddDomain(1);
        _back = _m.AddDomain(2);
        var share = new InProcessGrantShare(_m.Host, _front.Grant);
        for (int i = 0; i < _refs.Length; i++)
        {
            _front.RamPage(5 + i).Fill((byte)(0x50 + i));
            Assert.True(share.TryGrantForeignAccess(2, (ulong)(5 + i), readOnly: true, out _refs[i]));
        }

        new GrantTableHypercalls<TestDomain>(_m.Host, new TestResolver()).Register(_dispatcher);
    }

    public void Dispose() => _m.Dispose();

    [Fact]
    public void A_copy_finding_the_granters_word_held_waits_for_it_and_makes_the_granters_copies_share_it()
    {
        using var inHold = new ManualResetEventSlim();
        using var letGo = new ManualResetEventSlim();
        Thread holder = HoldInHypercall(_refs[0], inHold, letGo);
        Assert.True(inHold.Wait(TimeSpan.FromSeconds(30)));
        Assert.Equal(0, _front.Grant.CopiesShare); // taken alone: no copy wanted it before

        using var copied = new ManualResetEventSlim();
        var other = new Thread(() =>
        {
            CopyOnce(_refs[1], 3);
            copied.Set();
        });
        other.Start();
        Assert.False(copied.Wait(TimeSpan.FromMilliseconds(300))); // the word is held alone: it waits
        Assert.Equal(1, Volatile.Read(ref _front.Grant.CopiesShare)); // and the granter's copies share it from now on
        letGo.Set();
        Assert.True(copied.Wait(TimeSpan.FromSeconds(30)));
        holder.Join();
        other.Join();
        AssertReleased();
    }

    [Fact]
    public void A_copy_that_would_take_the_word_alone_while_another_shares_it_shares_it_too()
    {
        _front.Grant.CopiesShare = 1; // as after contention: the next copy shares the word
        using var inHold = new ManualResetEventSlim();
        using var letGo = new ManualResetEventSlim();
        Thread holder = HoldInHypercall(_refs[0], inHold, letGo);
        Assert.True(inHold.Wait(TimeSpan.FromSeconds(30)));

        // As if the sharing thread had counted down meanwhile: the next copy tries the word alone, finds the share,
        // lets the word go and shares it; it runs beside the held share (both claim grant 0), without waiting.
        Volatile.Write(ref _front.Grant.CopiesShare, 0);
        var other = new Thread(() => CopyOnce(_refs[0], 3));
        other.Start();
        Assert.True(other.Join(TimeSpan.FromSeconds(30)));
        Assert.Equal(1, _front.Grant.CopiesShare);
        Assert.Equal(ActiveGrantEntry.HostReadIncrement, _front.Grant.GetPinCount(_refs[0])); // the held claim alone

        letGo.Set();
        holder.Join();
        AssertReleased();
    }

    [Fact]
    public void A_thread_that_shared_the_word_for_its_share_calls_lets_copies_take_it_alone_again()
    {
        _front.Grant.CopiesShare = 1;
        for (int i = 0; i < CopySlot.ShareCalls - 1; i++)
        {
            CopyOnce(_refs[i % 2], 3);
        }

        Assert.Equal(1, _front.Grant.CopiesShare);
        CopyOnce(_refs[0], 3);
        Assert.Equal(0, _front.Grant.CopiesShare);
        CopyOnce(_refs[1], 3); // alone again: nothing shares it, nothing arms it
        Assert.Equal(0, _front.Grant.CopiesShare);
        AssertReleased();
    }

    // A thread making one GNTTABOP_copy hypercall of the backend from grant gref, whose status write waits inside the
    // call's hold (so the thread keeps the granter's word and its claim of gref) until letGo.
    private Thread HoldInHypercall(uint gref, ManualResetEventSlim inHold, ManualResetEventSlim letGo)
    {
        var view = new StatusWriteGate(_back.Virtual, inHold, letGo);
        var thread = new Thread(() =>
        {
            CopyHypercall.Invoke(_dispatcher, _back, [Op(gref, 4)], view);
        });
        thread.Start();
        return thread;
    }

    private void CopyOnce(uint gref, ulong into)
    {
        GnttabCopy op = Op(gref, into);
        _m.Host.Copy(_back.Grant, ref op);
        Assert.Equal((short)GrantStatus.Okay, op.Status);
        Assert.True(_back.RamPage((int)into)[..64].SequenceEqual(_front.RamPage(5 + Array.IndexOf(_refs, gref))[..64]));
    }

    private GnttabCopy Op(uint gref, ulong into) => new()
    {
        Source = new() { Ref = gref, DomId = _front.Id },
        Dest = new() { Gmfn = into, DomId = DomainId.Self },
        Len = 64,
        Flags = (ushort)GrantCopyFlags.SourceGref,
    };

    // No grant pinned or flagged, no frame referenced.
    private void AssertReleased()
    {
        foreach (uint gref in _refs)
        {
            Assert.Equal(0u, _front.Grant.GetPinCount(gref));
            ushort flags = MemoryMarshal.Read<ushort>(_m.Memory.GetFrame(_front.Grant.GetSharedFrame(0))[(int)(gref * 8)..]);
            Assert.Equal(0, flags & (int)(GrantEntryFlags.Reading | GrantEntryFlags.Writing));
            Assert.Equal(0, _m.Frames.ReferenceCount(_front.Ram[5 + Array.IndexOf(_refs, gref)]));
        }
    }
}
