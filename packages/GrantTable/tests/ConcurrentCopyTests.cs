using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// GNTTABOP_copy on one thread while the granter acts on another, as guests on two vCPUs do: the granter ends access
/// to the grant (gnttab_end_foreign_access_ref) and reuses its page, or the granter dies. A copy that reports
/// GNTST_okay must have read only what the page held while it was granted (never bytes written after the end of
/// access succeeded or after the granter's destruction), and a copy that fails must not have written anything.
/// Every call shape is used: single operations, batches holding a grant across operations, batches whose operations
/// alternate between the grant and the caller's own frames (the grant is released and claimed again between them),
/// and batches run by the hypercall (which drops the lock between operations when a preemption hook is set, and
/// otherwise between holds of up to 16 operations, while the batch keeps its grants claimed).
/// </summary>
public sealed class ConcurrentCopyTests : IDisposable
{
    private const byte Granted = 0x55;   // what the granted page holds while granted
    private const byte Reused = 0xEE;    // what the granter writes once access has ended
    private const byte Untouched = 0x11; // what a destination holds before a copy
    private const int Pieces = 8;        // a batch copies the page in eight 512-byte operations
    private const int Rounds = 200;      // grant, copy concurrently, end access, reuse the page
    private const int Repeats = 5;       // the longest call shape copies the page five times (40 operations)
    private const int Shapes = 5;        // the call shapes of CopyAndCheck

    private readonly TestMachine _m = new();
    private readonly TestDomain _front;
    private readonly TestDomain _back;
    private readonly InProcessGrantShare _share;
    private readonly HypercallDispatcher<TestDomain> _dispatcher = new();

    public ConcurrentCopyTests()
    {
        _front = _m.AddDomain(1);
        _back = _m.AddDomain(2);
        _share = new InProcessGrantShare(_m.Host, _front.Grant);
        new GrantTableHypercalls<TestDomain>(_m.Host, new TestResolver()).Register(_dispatcher);
    }

    public void Dispose() => _m.Dispose();

    private static GnttabCopy Piece(uint gref, int piece, ushort granter) => new()
    {
        Source = new() { Ref = gref, DomId = granter, Offset = (ushort)(piece * 512) },
        Dest = new() { Gmfn = 3, DomId = DomainId.Self, Offset = (ushort)(piece * 512) },
        Len = 512,
        Flags = (ushort)GrantCopyFlags.SourceGref,
    };

    // One call of the given shape copying the granted page into the backend's frame 3 (reset first); checks that every
    // operation reporting GNTST_okay copied the granted bytes and every failed one left its destination alone.
    // Returns the number of operations that succeeded.
    private int CopyAndCheck(uint gref, int shape, ushort granter = 1)
    {
        Span<byte> dest = _back.RamPage(3);
        dest.Fill(Untouched);
        Span<GnttabCopy> ops = stackalloc GnttabCopy[Pieces];
        for (int i = 0; i < Pieces; i++)
        {
            ops[i] = Piece(gref, i, granter);
        }

        switch (shape)
        {
            case 0: // single operations
                for (int i = 0; i < Pieces; i++)
                {
                    _m.Host.Copy(_back.Grant, ref ops[i]);
                }

                break;
            case 1: // one batch under one lock
                _m.Host.Copy(_back.Grant, ops);
                break;
            case 2: // one batch alternating with copies between the backend's own frames 6 and 7
                Span<GnttabCopy> mixed = stackalloc GnttabCopy[2 * Pieces];
                for (int i = 0; i < Pieces; i++)
                {
                    mixed[2 * i] = ops[i];
                    mixed[(2 * i) + 1] = new GnttabCopy
                    {
                        Source = new() { Gmfn = 6, DomId = DomainId.Self, Offset = (ushort)i },
                        Dest = new() { Gmfn = 7, DomId = DomainId.Self, Offset = (ushort)i },
                        Len = 1,
                    };
                }

                _m.Host.Copy(_back.Grant, mixed);
                for (int i = 0; i < Pieces; i++)
                {
                    ops[i].Status = mixed[2 * i].Status;
                    Assert.Equal((short)GrantStatus.Okay, mixed[(2 * i) + 1].Status);
                }

                break;
            case 3: // the hypercall: the grant stays claimed from operation to operation (the lock released between
                    // them when a preemption hook is set)
                CopyHypercall.Invoke(_dispatcher, _back, ops);
                break;
            default: // the hypercall, the page five times over: a call longer than one hold of the lock
                Span<GnttabCopy> repeated = stackalloc GnttabCopy[Repeats * Pieces];
                for (int i = 0; i < repeated.Length; i++)
                {
                    repeated[i] = ops[i % Pieces];
                }

                CopyHypercall.Invoke(_dispatcher, _back, repeated);
                for (int i = 0; i < Pieces; i++)
                {
                    // A piece is copied if any of its operations reported okay; all of them must then have copied the
                    // granted bytes, and a piece none of them copied must be untouched (checked below).
                    ops[i].Status = (short)GrantStatus.GeneralError;
                    for (int r = 0; r < Repeats; r++)
                    {
                        if (repeated[(r * Pieces) + i].Status == (short)GrantStatus.Okay)
                        {
                            ops[i].Status = (short)GrantStatus.Okay;
                        }
                    }
                }

                break;
        }

        int okay = 0;
        for (int i = 0; i < Pieces; i++)
        {
            Span<byte> piece = dest.Slice(i * 512, 512);
            if (ops[i].Status == (short)GrantStatus.Okay)
            {
                okay++;
                Assert.True(piece.IndexOfAnyExcept(Granted) < 0, $"operation {i} reported okay but copied bytes other than those the page held while granted");
            }
            else
            {
                Assert.True(piece.IndexOfAnyExcept(Untouched) < 0, $"operation {i} failed ({(GrantStatus)ops[i].Status}) but wrote its destination");
            }
        }

        return okay;
    }

    // Waits until the copier finished `count` more calls (or failed): the race is exercised however the threads are scheduled.
    private static void WaitForCalls(ref int calls, int count, ref Exception? failure)
    {
        int target = Volatile.Read(ref calls) + count;
        while (Volatile.Read(ref calls) < target && Volatile.Read(ref failure) is null)
        {
            Thread.Yield();
        }
    }

    // With alternateFrames the granter grants its pages 5 and 6 in turn under the same reference (the share reuses the
    // reference it freed last), as a frontend re-granting a slot does: a claim that resolved the frame the entry named
    // before it set GTF_reading must use the frame the entry names once it is set (the entry may have been ended and
    // granted again with the same flags and domid in between, so the compare-exchange alone does not tell).
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Copies_racing_with_end_of_access_never_read_what_the_granter_wrote_after_it_succeeded(bool alternateFrames)
    {
        uint firstGref = uint.MaxValue;
        long currentGref = -1; // the grant the copier uses; -1 while none
        bool done = false;
        int copied = 0, calls = 0;
        Exception? copierFailure = null;
        var copier = new Thread(() =>
        {
            try
            {
                for (int shape = 0; !Volatile.Read(ref done); shape = (shape + 1) % Shapes)
                {
                    long gref = Volatile.Read(ref currentGref);
                    if (gref < 0)
                    {
                        Thread.Yield();
                        continue;
                    }

                    int okay = CopyAndCheck((uint)gref, shape);
                    copied += okay;
                    Interlocked.Increment(ref calls);
                }
            }
            catch (Exception e)
            {
                Volatile.Write(ref copierFailure, e);
            }
        });
        copier.Start();
        try
        {
            for (int round = 0; round < Rounds && Volatile.Read(ref copierFailure) is null; round++)
            {
                int frame = alternateFrames ? 5 + (round % 2) : 5;
                Span<byte> page = _front.RamPage(frame);
                page.Fill(Granted);
                Assert.True(_share.TryGrantForeignAccess(2, (ulong)frame, readOnly: true, out uint gref));
                firstGref = Math.Min(firstGref, gref);
                Assert.Equal(firstGref, gref); // every round grants the same reference
                Volatile.Write(ref currentGref, gref);
                WaitForCalls(ref calls, 2, ref copierFailure); // at least one whole call on this grant, then race the next
                Thread.SpinWait(50 * (round % 16));

                // gnttab_end_foreign_access: retry while GTF_reading says a copy holds the grant.
                while (!_share.EndForeignAccess(gref))
                {
                    Thread.SpinWait(5);
                }

                page.Fill(Reused); // the frontend reuses its page: no copy may see this
                Volatile.Write(ref currentGref, -1);
                Assert.Equal(0u, _front.Grant.GetPinCount(gref));
            }
        }
        finally
        {
            Volatile.Write(ref done, true);
            copier.Join();
        }

        Assert.Null(copierFailure);
        Assert.True(copied > 0, "no copy succeeded: the race was not exercised");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Copies_racing_with_the_granters_death_fail_cleanly_once_it_is_destroyed(bool preemptionHook)
    {
        // Each round a new granter (d3) grants its page 5 and dies while the backend copies from it. With a preemption
        // hook the hypercall spins in it between operations, so deaths land while a batch holds the grant claimed with
        // the lock released; without one, between the holds of the lock of a call longer than one hold.
        if (preemptionHook)
        {
            _dispatcher.PreemptCheck = _ =>
            {
                Thread.SpinWait(100);
                return false;
            };
        }

        long current = -1;    // round << 32 | gref of the live granter (domain 3 + round); -1 between rounds
        int killedRound = -1; // the last round whose granter is destroyed and its frames freed
        bool done = false;
        int okayAfterDeath = 0, okayBefore = 0, calls = 0;
        Exception? copierFailure = null;
        var copier = new Thread(() =>
        {
            try
            {
                for (int call = 0; !Volatile.Read(ref done); call++)
                {
                    long c = Volatile.Read(ref current);
                    if (c < 0)
                    {
                        Thread.Yield();
                        continue;
                    }

                    int round = (int)(c >> 32);
                    bool dead = Volatile.Read(ref killedRound) >= round;
                    int okay = CopyAndCheck((uint)c, call % Shapes, granter: (ushort)(3 + round));
                    if (dead)
                    {
                        okayAfterDeath += okay;
                    }
                    else
                    {
                        okayBefore += okay;
                    }

                    Interlocked.Increment(ref calls);
                }
            }
            catch (Exception e)
            {
                Volatile.Write(ref copierFailure, e);
            }
        });
        copier.Start();
        try
        {
            for (int round = 0; round < 60 && Volatile.Read(ref copierFailure) is null; round++)
            {
                TestDomain granter = _m.AddDomain((ushort)(3 + round)); // a new id each round: a copy naming a dead one must fail
                granter.RamPage(5).Fill(Granted);
                Assert.True(new InProcessGrantShare(_m.Host, granter.Grant).TryGrantForeignAccess(2, 5, readOnly: true, out uint gref));
                Volatile.Write(ref current, ((long)round << 32) | gref);
                WaitForCalls(ref calls, 1, ref copierFailure);
                Thread.SpinWait(200 * (round % 16));
                _m.Kill(granter); // grant state destroyed, then every RAM frame freed (and zeroed) while copies go on
                Volatile.Write(ref killedRound, round);
                WaitForCalls(ref calls, 2, ref copierFailure); // and a whole call after the death
                Volatile.Write(ref current, -1);
            }
        }
        finally
        {
            Volatile.Write(ref done, true);
            copier.Join();
        }

        Assert.Null(copierFailure);
        Assert.Equal(0, okayAfterDeath); // a call begun after the death copies nothing
        Assert.True(okayBefore > 0, "no copy succeeded: the race was not exercised");

        // The backend is unharmed: a copy between two of its own frames still works.
        var own = new GnttabCopy
        {
            Source = new() { Gmfn = 7, DomId = DomainId.Self },
            Dest = new() { Gmfn = 3, DomId = DomainId.Self },
            Len = 4096,
        };
        _m.Host.Copy(_back.Grant, ref own);
        Assert.Equal((short)GrantStatus.Okay, own.Status);
    }

    [Fact]
    public void A_frame_its_owner_frees_while_a_call_copies_into_it_is_not_written_after_the_free()
    {
        // The backend copies its own page 7 into its page 3 sixteen times per call; meanwhile (another vCPU's
        // decrease_reservation) page 3 leaves its EPT and its frame is freed, which zeroes it. Xen's copy holds a page
        // reference, so the frame outlives the copy; here the free waits for the call instead. Either way nothing may
        // land in the frame once it is freed.
        _back.RamPage(7).Fill(0x77);
        bool done = false;
        int calls = 0;
        Exception? copierFailure = null;
        var copier = new Thread(() =>
        {
            try
            {
                var ops = new GnttabCopy[16];
                while (!Volatile.Read(ref done))
                {
                    for (int i = 0; i < ops.Length; i++)
                    {
                        ops[i] = new GnttabCopy
                        {
                            Source = new() { Gmfn = 7, DomId = DomainId.Self },
                            Dest = new() { Gmfn = 3, DomId = DomainId.Self },
                            Len = 4096,
                        };
                    }

                    _m.Host.Copy(_back.Grant, ops);
                    Interlocked.Increment(ref calls);
                }
            }
            catch (Exception e)
            {
                Volatile.Write(ref copierFailure, e);
            }
        });
        copier.Start();
        try
        {
            MachineFrameNumber frame = _back.Ram[3];
            for (int round = 0; round < 200 && Volatile.Read(ref copierFailure) is null; round++)
            {
                WaitForCalls(ref calls, 1, ref copierFailure);
                Thread.SpinWait(100 * (round % 16));
                _back.Ept.Unmap(new GuestFrameNumber(3).Address, 1);
                GuestPhysicalMemory.InvalidateSingleContext(_m.Memory, _back.Ept.Pointer);
                Assert.True(_m.Frames.Free(frame)); // nobody holds a reference: freed (and zeroed) now
                WaitForCalls(ref calls, 1, ref copierFailure); // let a call that was copying finish
                Assert.True(_m.Memory.GetFrame(frame).IndexOfAnyExcept((byte)0) < 0, $"round {round}: a copy wrote into frame {frame} after its owner freed it");

                frame = _m.Memory.AllocateFrame(new FrameOwner(2));
                _back.Ept.Map(new GuestFrameNumber(3).Address, frame, 1, EptAccess.ReadWriteExecute);
            }
        }
        finally
        {
            Volatile.Write(ref done, true);
            copier.Join();
        }

        Assert.Null(copierFailure);
    }
}
