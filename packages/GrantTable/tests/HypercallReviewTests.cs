using System.Runtime.InteropServices;
using CsCheck;
using VmmKit.Ept;
using VmmKit.Hypercall;
using static VmmKit.GrantTable.Tests.GuestValues;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// A review of <see cref="GrantTableHypercalls{TCaller}"/> against Xen 4.17's <c>hvm_grant_table_op</c>,
/// <c>do_grant_table_op</c> and <c>compat_grant_table_op</c>: how the three arguments are decoded, which guest memory
/// each command reads and writes (and what it does when that memory is the very page the operation changes), how
/// batches continue, and that the API, native and compat transports of <c>GNTTABOP_copy</c> agree.
/// </summary>
public sealed class HypercallReviewTests : IDisposable
{
    private const ulong Buffer = 20UL << 12;   // guest-physical buffer in the caller's RAM (paging off)
    private readonly TestMachine _m = new();
    private readonly TestDomain _front;
    private readonly TestDomain _back;
    private readonly HypercallDispatcher<TestDomain> _dispatcher = new();
    private readonly InProcessGrantShare _share;

    public HypercallReviewTests()
    {
        _front = _m.AddDomain(1);
        _back = _m.AddDomain(2);
        _share = new InProcessGrantShare(_m.Host, _front.Grant);
        new GrantTableHypercalls<TestDomain>(_m.Host, new TestResolver()).Register(_dispatcher);
    }

    public void Dispose() => _m.Dispose();

    private long Call(TestDomain caller, ulong cmd, ulong uop, ulong count, HypercallAbi abi = HypercallAbi.Native64) =>
        GrantTableCall.Invoke(_dispatcher, caller, cmd, uop, count, abi, out _);

    private long Call(TestDomain caller, ulong cmd, ulong uop, ulong count, HypercallAbi abi, out HypercallArguments after) =>
        GrantTableCall.Invoke(_dispatcher, caller, cmd, uop, count, abi, out after);

    private byte[] Snapshot(ulong gpa, int length)
    {
        var bytes = new byte[length];
        Assert.True(_back.TryRead(gpa, bytes));
        return bytes;
    }

    /// <summary>
    /// do_grant_table_op(unsigned int cmd, ..., unsigned int count) (and hvm_grant_table_op's switch on that cmd): a
    /// 64-bit caller's RDI and RDX reach the handler truncated to 32 bits, so their upper halves name nothing: count
    /// 2^32 + 1 is one operation.
    /// </summary>
    [Fact]
    public void A_64_bit_callers_cmd_and_count_are_unsigned_int()
    {
        Put(_back, Buffer, new GnttabQuerySize { Dom = DomainId.Self });
        Assert.Equal(0, Call(_back, 0xFFFF_FFFF_0000_0000UL | (ulong)GrantTableOp.QuerySize, Buffer, 0x1_0000_0001UL));
        Assert.Equal(((short)0, 1u), (Get<GnttabQuerySize>(_back, Buffer).Status, Get<GnttabQuerySize>(_back, Buffer).NrFrames));

        GnttabCopy SelfCopy(ushort offset) => new()
        {
            Source = new() { Gmfn = 3, DomId = DomainId.Self },
            Dest = new() { Gmfn = 4, DomId = DomainId.Self, Offset = offset },
            Len = 1,
            Status = 99,
        };
        Put(_back, Buffer + 0x100, SelfCopy(0));
        Put(_back, Buffer + 0x128, SelfCopy(1));
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.Copy, Buffer + 0x100, 0x1_0000_0001UL));
        Assert.Equal(0, Get<GnttabCopy>(_back, Buffer + 0x100).Status);
        Assert.Equal(99, Get<GnttabCopy>(_back, Buffer + 0x128).Status);
    }

    /// <summary>
    /// do_grant_table_op passes limit_max = UINT_MAX for a 64-bit caller's setup_table: only the domain's
    /// max_grant_frames bounds it, up to the largest limit a host may give (1024 frames), all reported.
    /// </summary>
    [Fact]
    public void A_64_bit_callers_setup_table_reaches_1024_frames()
    {
        using var m = new TestMachine(64UL << 20, new GrantTableLimits(1024, 1));
        TestDomain d = m.AddDomain(1);
        var dispatcher = new HypercallDispatcher<TestDomain>();
        new GrantTableHypercalls<TestDomain>(m.Host, new TestResolver()).Register(dispatcher);
        Put(d, Buffer, new GnttabSetupTable { Dom = DomainId.Self, NrFrames = 1024, Status = 99, FrameList = Buffer + 0x1000 });
        Assert.Equal(0, GrantTableCall.Invoke(dispatcher, d, (ulong)GrantTableOp.SetupTable, Buffer, 1, HypercallAbi.Native64, out _));
        Assert.Equal(0, Get<GnttabSetupTable>(d, Buffer).Status);
        Assert.Equal(1024, d.Grant.SharedFrameCount);
        Assert.Equal(GrantTableHost.InvalidFrame, Get<ulong>(d, Buffer + 0x1000 + (1023 * 8)));

        Put(d, Buffer, new GnttabSetupTable { Dom = DomainId.Self, NrFrames = 1025, Status = 99, FrameList = Buffer + 0x1000 });
        Assert.Equal(0, GrantTableCall.Invoke(dispatcher, d, (ulong)GrantTableOp.SetupTable, Buffer, 1, HypercallAbi.Native64, out _));
        Assert.Equal((short)GrantStatus.GeneralError, Get<GnttabSetupTable>(d, Buffer).Status);
    }

    /// <summary>gnttab_get_version: no such domain is -ESRCH, returned before anything is written back.</summary>
    [Fact]
    public void Get_version_of_no_domain_is_ESRCH_and_writes_nothing()
    {
        Put(_back, Buffer, new GnttabGetVersion { Dom = 999, Version = 77 });
        Assert.Equal(XenErrno.ESRCH.Negated(), Call(_back, (ulong)GrantTableOp.GetVersion, Buffer, 1));
        Assert.Equal(77u, Get<GnttabGetVersion>(_back, Buffer).Version);
    }

    /// <summary>
    /// gnttab_query_size's __copy_to_guest(uop, &amp;op, 1) and compat_grant_table_op's __copy_to_guest(uop, &amp;cmp.setup, 1)
    /// write back the whole structure they read, so its padding comes back as the guest gave it.
    /// </summary>
    [Fact]
    public void Whole_structure_copy_backs_return_the_padding_the_guest_gave()
    {
        byte[] query = new byte[16];
        query.AsSpan().Fill(0xA5);
        MemoryMarshal.Write(query, DomainId.Self);
        Assert.True(_back.TryWrite(Buffer, query));
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.QuerySize, Buffer, 1));
        byte[] after = Snapshot(Buffer, 16);
        Assert.Equal([0xA5, 0xA5, 0xA5, 0xA5], (byte[])[after[2], after[3], after[14], after[15]]);

        byte[] setup = new byte[16];
        setup.AsSpan().Fill(0x5A);
        MemoryMarshal.Write(setup, DomainId.Self);
        MemoryMarshal.Write(setup.AsSpan(4), 1u);
        MemoryMarshal.Write(setup.AsSpan(12), (uint)(Buffer + 0x100));
        Assert.True(_back.TryWrite(Buffer + 0x40, setup));
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.SetupTable, Buffer + 0x40, 1, HypercallAbi.Compat32));
        after = Snapshot(Buffer + 0x40, 16);
        Assert.Equal([0x5A, 0x5A, 0x5A, 0x5A], (byte[])[after[2], after[3], after[10], after[11]]);
    }

    /// <summary>
    /// gnttab_unmap_grant_ref checks for preemption after each batch of GNTTAB_UNMAP_BATCH_SIZE when operations remain;
    /// a 32-bit caller's unmaps use the native layout (CHECK_gnttab_unmap_grant_ref), so the continuation has uop
    /// advanced by 32 * 24 bytes and count reduced by 32; the rest of each operation stays as the guest wrote it.
    /// </summary>
    [Fact]
    public void A_32_bit_callers_unmaps_continue_after_a_batch_of_32()
    {
        _dispatcher.PreemptCheck = _ => true;
        for (int i = 0; i < 40; i++)
        {
            Put(_back, Buffer + ((ulong)i * 24), new GnttabUnmapGrantRef { HostAddr = 0x1000UL << 12, DevBusAddr = 0x77, Handle = 5000, Status = 99 });
        }

        Assert.Equal((long)HypercallNumber.GrantTableOp, Call(_back, (ulong)GrantTableOp.UnmapGrantRef, Buffer, 40, HypercallAbi.Compat32, out HypercallArguments after));
        Assert.Equal(((ulong)GrantTableOp.UnmapGrantRef, Buffer + (32 * 24), 8UL), (after[0], after[1], after[2]));
        var last = Get<GnttabUnmapGrantRef>(_back, Buffer + (31 * 24));
        Assert.Equal(((short)GrantStatus.BadHandle, 0x77UL, 5000u), (last.Status, last.DevBusAddr, last.Handle));
        Assert.Equal(99, Get<GnttabUnmapGrantRef>(_back, Buffer + (32 * 24)).Status);
    }

    /// <summary>
    /// gnttab_swap_grant_ref: a preemption check before every operation but the first, the continuation at the first
    /// operation not run; the status is at offset 8, the references stay as the guest wrote them.
    /// </summary>
    [Fact]
    public void Swap_writes_only_its_status_and_continues_at_the_operation_not_run()
    {
        _dispatcher.PreemptCheck = _ => true;
        Put(_back, Buffer, new GnttabSwapGrantRef { RefA = 100_000, RefB = 1, Status = 99 });
        Put(_back, Buffer + 12, new GnttabSwapGrantRef { RefA = 100_000, RefB = 1, Status = 99 });
        Assert.Equal((long)HypercallNumber.GrantTableOp, Call(_back, (ulong)GrantTableOp.SwapGrantRef, Buffer, 2, HypercallAbi.Native64, out HypercallArguments after));
        Assert.Equal((Buffer + 12, 1UL), (after[1], after[2]));
        var first = Get<GnttabSwapGrantRef>(_back, Buffer);
        Assert.Equal(((short)GrantStatus.BadGntref, 100_000u, 1u), (first.Status, first.RefA, first.RefB));
        Assert.Equal(99, Get<GnttabSwapGrantRef>(_back, Buffer + 12).Status);
    }

    /// <summary>
    /// compat_grant_table_op, GNTTABOP_copy: without preemption a call of several translation-area chunks (204
    /// operations each) runs them all, one chunk after the other, and writes every status.
    /// </summary>
    [Fact]
    public void A_32_bit_callers_copy_of_several_chunks_runs_every_operation()
    {
        const int count = 500;
        for (int i = 0; i < count; i++)
        {
            Put(_back, Buffer + ((ulong)i * 24), new CompatGnttabCopy
            {
                Source = new() { Gmfn = 3, DomId = DomainId.Self },
                Dest = new() { Gmfn = 4, DomId = DomainId.Self, Offset = (ushort)i },
                Len = 1,
                Status = 99,
            });
        }

        _back.RamPage(3).Fill(0x3D);
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.Copy, Buffer, count, HypercallAbi.Compat32));
        for (int i = 0; i < count; i++)
        {
            Assert.Equal(0, Get<CompatGnttabCopy>(_back, Buffer + ((ulong)i * 24)).Status);
            Assert.Equal(0x3D, _back.RamPage(4)[i]);
        }
    }

    /// <summary>
    /// gnttab_set_version: v2 to v1 takes the status frames out of the guest's physmap before freeing them, so a
    /// set_version operation that lies in a status frame cannot be copied back (copy_to_guest fails: -EFAULT); the
    /// copy back must go through the guest's current EPT, never to the frame just freed.
    /// </summary>
    [Fact]
    public void A_set_version_op_in_a_status_frame_it_frees_is_EFAULT()
    {
        Put(_back, Buffer, new GnttabSetVersion { Version = 2 });
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.SetVersion, Buffer, 1));
        Assert.Equal(0, _m.Host.AddToPhysmap(_back.Grant, GrantTableHost.GrantTableStatusIndex, new GuestFrameNumber(0x3000)));
        Assert.True(_back.Ept.TryLookup(new GuestFrameNumber(0x3000), out MachineFrameNumber status, out _));
        const ulong uop = (0x3000UL << 12) + 0x100;
        Put(_back, uop, new GnttabSetVersion { Version = 1 });

        Assert.Equal(XenErrno.EFAULT.Negated(), Call(_back, (ulong)GrantTableOp.SetVersion, uop, 1));
        Assert.Equal(1, _back.Grant.Version);
        Assert.False(_m.Memory.TryGetOwner(status, out _));
    }

    /// <summary>
    /// gnttab_unmap_grant_ref writes each status after unmap_common took the mapping out of the p2m: an unmap array in
    /// the very page it unmaps gets -EFAULT for that status, and nothing lands in the granter's page.
    /// </summary>
    [Fact]
    public void An_unmap_op_in_the_page_it_unmaps_is_EFAULT_and_the_granters_page_is_untouched()
    {
        _front.RamPage(5).Clear();
        Assert.True(_share.TryGrantForeignAccess(2, 5, false, out uint gref));
        Put(_back, Buffer, new GnttabMapGrantRef { HostAddr = 0x1000UL << 12, Flags = (uint)GrantMapFlags.HostMap, Ref = gref, Dom = 1 });
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.MapGrantRef, Buffer, 1));
        var map = Get<GnttabMapGrantRef>(_back, Buffer);
        Assert.Equal(0, map.Status);
        const ulong uop = (0x1000UL << 12) + 0x40;
        Put(_back, uop, new GnttabUnmapGrantRef { HostAddr = 0x1000UL << 12, Handle = map.Handle, Status = 99 });

        Assert.Equal(XenErrno.EFAULT.Negated(), Call(_back, (ulong)GrantTableOp.UnmapGrantRef, uop, 1));
        Assert.Equal(99, MemoryMarshal.Read<GnttabUnmapGrantRef>(_front.RamPage(5)[0x40..]).Status);
        Assert.False(_share.IsForeignAccessInUse(gref));
    }

    /// <summary>
    /// gnttab_map_grant_ref copies the whole operation back after map_grant_ref changed the p2m: a read-only map over
    /// the page that holds the operation itself cannot be copied back (-EFAULT, the mapping made), and neither the
    /// replaced RAM page nor the granted page is written.
    /// </summary>
    [Fact]
    public void A_map_op_in_the_page_it_maps_over_read_only_is_EFAULT()
    {
        _front.RamPage(5).Fill(0x11);
        Assert.True(_share.TryGrantForeignAccess(2, 5, true, out uint gref));
        const ulong uop = (30UL << 12) + 0x80;
        Put(_back, uop, new GnttabMapGrantRef { HostAddr = 30UL << 12, Flags = (uint)(GrantMapFlags.HostMap | GrantMapFlags.ReadOnly), Ref = gref, Dom = 1, Status = 99 });
        byte[] before = _back.RamPage(30).ToArray();

        Assert.Equal(XenErrno.EFAULT.Negated(), Call(_back, (ulong)GrantTableOp.MapGrantRef, uop, 1));
        Assert.Equal(before, _back.RamPage(30).ToArray());
        Assert.All(_front.RamPage(5).ToArray(), b => Assert.Equal(0x11, b));
        Assert.True(_share.IsForeignAccessInUse(gref));
    }

    /// <summary>
    /// gnttab_copy and compat_grant_table_op are transports of the same operations: random calls through the host API
    /// (one batch), the native hypercall without a preemption hook, the native hypercall with a hook that preempts at
    /// random (continuations followed to the end) and the compat hypercall (chunks, statuses written last to first)
    /// give every operation the same status, and leave every page and the grant table the same.
    /// </summary>
    [Fact]
    public void Copy_through_the_api_native_preempted_and_compat_hypercalls_agree() =>
        Gen.Int[0, int.MaxValue].Array[7].Array[1, 40].Sample(d => CopyTransports(d, d[0][6]), iter: 60);

    private const ulong OpsArea = 40UL << 12; // the operations, in a page no copy names

    private static void CopyTransports(int[][] draws, int seed)
    {
        using var api = new CopyWorld();
        using var native = new CopyWorld();
        using var preempted = new CopyWorld();
        using var compat = new CopyWorld();
        var ops = new GnttabCopy[draws.Length];
        for (int i = 0; i < ops.Length; i++)
        {
            int[] r = draws[i];
            ops[i] = new GnttabCopy
            {
                Source = CopySide(r[0], r[2], api.Grefs, out bool srcGref),
                Dest = CopySide(r[1], r[3], api.Grefs, out bool dstGref),
                Len = (r[4] % 5) switch { 0 => 0, 1 => 1, 2 => 16, 3 => 4096, _ => (ushort)(r[4] / 5 % 4097) },
                Flags = (ushort)((srcGref ? GrantCopyFlags.SourceGref : 0) | (dstGref ? GrantCopyFlags.DestGref : 0)),
                Status = 99,
            };
        }

        GnttabCopy[] viaApi = [.. ops];
        api.M.Host.Copy(api.Back.Grant, viaApi);

        var rng = new Random(seed);
        short[] n = CopyByHypercall(native, ops, HypercallAbi.Native64, null);
        short[] p = CopyByHypercall(preempted, ops, HypercallAbi.Native64, _ => rng.Next(3) == 0);
        short[] c = CopyByHypercall(compat, ops, HypercallAbi.Compat32, _ => rng.Next(3) == 0);
        for (int i = 0; i < ops.Length; i++)
        {
            Assert.True(viaApi[i].Status == n[i] && n[i] == p[i] && p[i] == c[i], $"op {i}: api {viaApi[i].Status}, native {n[i]}, preempted {p[i]}, compat {c[i]}");
        }

        api.AssertSameAs(native);
        api.AssertSameAs(preempted);
        api.AssertSameAs(compat);
    }

    private static short[] CopyByHypercall(CopyWorld w, GnttabCopy[] ops, HypercallAbi abi, Func<TestDomain, bool>? preempt)
    {
        var dispatcher = new HypercallDispatcher<TestDomain> { PreemptCheck = preempt };
        new GrantTableHypercalls<TestDomain>(w.M.Host, new TestResolver()).Register(dispatcher);
        ulong size = abi == HypercallAbi.Native64 ? 40UL : 24UL;
        for (int i = 0; i < ops.Length; i++)
        {
            GnttabCopy o = ops[i];
            if (abi == HypercallAbi.Native64)
            {
                Put(w.Back, OpsArea + ((ulong)i * size), o);
            }
            else
            {
                Put(w.Back, OpsArea + ((ulong)i * size), new CompatGnttabCopy
                {
                    Source = new() { Gmfn = (uint)o.Source.Gmfn, DomId = o.Source.DomId, Offset = o.Source.Offset },
                    Dest = new() { Gmfn = (uint)o.Dest.Gmfn, DomId = o.Dest.DomId, Offset = o.Dest.Offset },
                    Len = o.Len,
                    Flags = o.Flags,
                    Status = 99,
                });
            }
        }

        ulong uop = OpsArea, count = (ulong)ops.Length;
        for (int round = 0; ; round++)
        {
            Assert.True(round <= ops.Length, "every continuation makes progress");
            long rc = GrantTableCall.Invoke(dispatcher, w.Back, (ulong)GrantTableOp.Copy, uop, count, abi, out HypercallArguments after);
            if (rc == 0)
            {
                break;
            }

            Assert.Equal((long)HypercallNumber.GrantTableOp, rc);
            Assert.Equal(uop + ((count - after[2]) * size), after[1]);
            (uop, count) = (after[1], after[2]);
        }

        var statuses = new short[ops.Length];
        for (int i = 0; i < ops.Length; i++)
        {
            ulong at = OpsArea + ((ulong)i * size);
            statuses[i] = abi == HypercallAbi.Native64 ? Get<GnttabCopy>(w.Back, at).Status : Get<CompatGnttabCopy>(w.Back, at).Status;
        }

        return statuses;
    }

    // A side of an operation: grants read-only and writable to the caller, a grant to another domain, no such
    // reference, the caller's own frames, another domain's frame number, a frame the caller does not have (it fits in
    // 32 bits, so the compat layout says the same).
    private static GnttabCopyPtr CopySide(int kind, int where, uint[] grefs, out bool gref)
    {
        ushort offset = (ushort)(where % 4 == 0 ? where / 4 % 4100 : where / 4 % 8 * 512);
        gref = kind % 8 < 4;
        return (kind % 8) switch
        {
            0 => new() { Ref = grefs[0], DomId = 1, Offset = offset },
            1 => new() { Ref = grefs[1], DomId = 1, Offset = offset },
            2 => new() { Ref = grefs[2], DomId = 1, Offset = offset },
            3 => new() { Ref = 999_999, DomId = 1, Offset = offset },
            4 or 5 => new() { Gmfn = (ulong)(2 + (kind / 8 % 3)), DomId = DomainId.Self, Offset = offset },
            6 => new() { Gmfn = 5, DomId = 1, Offset = offset },
            _ => new() { Gmfn = 0xFFFF_FFF0, DomId = DomainId.Self, Offset = offset },
        };
    }
}
