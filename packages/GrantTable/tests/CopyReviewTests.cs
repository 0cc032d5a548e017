using System.Diagnostics;
using System.Reflection;
using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// Findings of a review of GNTTABOP_copy against Xen 4.17's grant_table.c (gnttab_copy, gnttab_copy_one,
/// gnttab_copy_claim_buf, gnttab_copy_buf_valid, gnttab_copy_buf, acquire_grant_for_copy, release_grant_for_copy,
/// _set_status_v1/_v2, get_paged_frame).
/// </summary>
public sealed unsafe class CopyReviewTests : IDisposable
{
    private readonly TestMachine _m = new();
    private readonly TestDomain _front; // the granter, d1 (v1 table)
    private readonly TestDomain _back;  // the caller, d2
    private readonly InProcessGrantShare _share;

    public CopyReviewTests()
    {
        _front = _m.AddDomain(1);
        _back = _m.AddDomain(2);
        _share = new InProcessGrantShare(_m.Host, _front.Grant);
        _front.RamPage(5).Fill(0x55);
        _front.RamPage(6).Fill(0x66);
        _back.RamPage(3).Fill(0x33);
    }

    public void Dispose() => _m.Dispose();

    private uint Grant(int gfn, bool readOnly = false)
    {
        Assert.True(_share.TryGrantForeignAccess(2, (ulong)gfn, readOnly, out uint gref));
        return gref;
    }

    private GrantEntryV1* EntryV1(uint gref) => (GrantEntryV1*)_m.Memory.GetFramePointer(_front.Grant.GetSharedFrame(0)) + gref;

    // MachineMemory's lock, which get_paged_frame's owner check (MachineMemory.TryGetOwner) takes after the EPT walk: a
    // copy blocked on it has resolved the granted gfn to a frame and not yet set GTF_reading.
    // (A private field of VmmKit.Ept: if it is renamed or becomes another kind of lock, this test must follow.)
    private object MemoryLock =>
        typeof(MachineMemory).GetField("_lock", BindingFlags.NonPublic | BindingFlags.Instance)?.GetValue(_m.Memory) is { } gate &&
        gate.GetType() == typeof(object)
            ? gate
            : throw new InvalidOperationException("MachineMemory no longer locks a private object _lock; update CopyReviewTests.");

    /// <summary>
    /// Runs <paramref name="op"/> as the backend's copy on a thread of its own while this thread holds the memory lock;
    /// once that thread waits for it (between the walk of the granter's gfn 5 and the claim), the granter moves its gfn
    /// 5 to a new frame B and sees GTF_reading/GTF_writing clear on <paramref name="gref"/>; then the copy goes on.
    /// Returns B.
    /// </summary>
    private MachineFrameNumber CopyWhileGranterMovesGfn5(GnttabCopy op, uint gref, out short status)
    {
        MachineFrameNumber b = _m.Memory.AllocateFrame(new FrameOwner(1));
        _m.Memory.GetFrame(b).Fill(0xBB);

        // The granter's cache of resolved frames goes stale (a change of its EPT elsewhere), the backend's stays warm.
        _front.Ept.Protect(new GuestFrameNumber(60).Address, 1, EptAccess.Read);

        short result = 99;
        var copier = new Thread(() =>
        {
            _m.Host.Copy(_back.Grant, ref op);
            result = op.Status;
        });

        object gate = MemoryLock;
        Monitor.Enter(gate);
        try
        {
            copier.Start();
            var clock = Stopwatch.StartNew();
            while ((copier.ThreadState & System.Threading.ThreadState.WaitSleepJoin) == 0)
            {
                Assert.False(copier.ThreadState.HasFlag(System.Threading.ThreadState.Stopped), "the copy did not look the frame up");
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), "the copy never waited for the memory lock");
                Thread.Yield();
            }

            // The granter's vCPU: gfn 5 now maps B (its old frame A stays the granter's, nothing is freed), and the
            // entry is not in use, so from here on a claim must find B (Xen reads the p2m after setting GTF_reading).
            _front.Ept.Map(new GuestFrameNumber(5).Address, b, 1, EptAccess.ReadWriteExecute);
            Assert.Equal(0, EntryV1(gref)->Flags & (ushort)(GrantEntryFlags.Reading | GrantEntryFlags.Writing));
        }
        finally
        {
            Monitor.Exit(gate);
        }

        Assert.True(copier.Join(TimeSpan.FromSeconds(30)));
        status = result;
        return b;
    }

    /// <summary>
    /// acquire_grant_for_copy (through _set_status_v1, then get_paged_frame) looks the granted gfn up only after
    /// GTF_writing is set: a granter that moved the gfn to another frame while it saw the entry not in use has that
    /// frame written, never the one it moved away. The backend's shape (a v1 grant as the destination, a frame of the
    /// caller as the source: CopyOneGrantFrame) resolved the gfn before its compare-exchange and wrote the old frame.
    /// </summary>
    [Fact]
    public void A_copy_into_a_v1_grant_writes_the_frame_the_gfn_maps_once_GTF_writing_is_set()
    {
        uint warm = Grant(6), gref = Grant(5);
        var first = new GnttabCopy
        {
            Source = new() { Gmfn = 3, DomId = DomainId.Self },
            Dest = new() { Ref = warm, DomId = 1 },
            Len = 16,
            Flags = (ushort)GrantCopyFlags.DestGref,
        };
        _m.Host.Copy(_back.Grant, ref first); // resolves the backend's gfn 3 into its cache
        Assert.Equal(0, first.Status);

        var op = first;
        op.Dest.Ref = gref;
        op.Status = 99;
        MachineFrameNumber b = CopyWhileGranterMovesGfn5(op, gref, out short status);

        Assert.Equal(0, status);
        Assert.Equal(0x33, _m.Memory.GetFrame(b)[0]);
        Assert.Equal(0x55, _front.RamPage(5)[0]); // the frame the granter moved away is not written
        Assert.Equal(0u, _front.Grant.GetPinCount(gref));
        Assert.Equal(0, EntryV1(gref)->Flags & (ushort)(GrantEntryFlags.Reading | GrantEntryFlags.Writing));
    }

    /// <summary>
    /// acquire_grant_for_copy, the general path (both sides grants, CopyOneCore): as above for the source, which
    /// AcquireGrantForCopy resolved before SetStatus and kept when the entry still named the same gfn.
    /// </summary>
    [Fact]
    public void A_copy_from_a_v1_grant_reads_the_frame_the_gfn_maps_once_GTF_reading_is_set()
    {
        uint src = Grant(5, readOnly: true), dst = Grant(6);
        var op = new GnttabCopy
        {
            Source = new() { Ref = src, DomId = 1 },
            Dest = new() { Ref = dst, DomId = 1 },
            Len = 16,
            Flags = (ushort)(GrantCopyFlags.SourceGref | GrantCopyFlags.DestGref),
            Status = 99,
        };

        CopyWhileGranterMovesGfn5(op, src, out short status);

        Assert.Equal(0, status);
        Assert.Equal(0xBB, _front.RamPage(6)[0]); // B's bytes, not those of the frame moved away (0x55)
        Assert.Equal(0x66, _front.RamPage(6)[16]);
        Assert.Equal(0u, _front.Grant.GetPinCount(src));
        Assert.Equal(0u, _front.Grant.GetPinCount(dst));
    }
}
