using System.Runtime.InteropServices;
using VmmKit.Ept;
using VmmKit.Hypercall;
using static VmmKit.GrantTable.Tests.GuestValues;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// <c>__HYPERVISOR_grant_table_op</c> through VmmKit.Hypercall's dispatcher: arguments and structures in guest
/// memory, both ABIs, the HVM command set, errnos and continuations; and the table frames a guest places with
/// <c>XENMAPSPACE_grant_table</c> (<see cref="GrantTableHost.AddToPhysmap"/>), which its handler calls.
/// </summary>
public sealed class HypercallTests : IDisposable
{
    private const ulong Buffer = 20UL << 12;   // guest-physical buffer in the caller's RAM (paging off)
    private readonly TestMachine _m = new();
    private readonly TestDomain _front;
    private readonly TestDomain _back;
    private readonly HypercallDispatcher<TestDomain> _dispatcher = new();
    private readonly InProcessGrantShare _share;

    public HypercallTests()
    {
        _front = _m.AddDomain(1);
        _back = _m.AddDomain(2);
        _share = new InProcessGrantShare(_m.Host, _front.Grant);
        new GrantTableHypercalls<TestDomain>(_m.Host, new TestResolver()).Register(_dispatcher);
    }

    public void Dispose() => _m.Dispose();

    private long Call(TestDomain caller, ulong cmd, ulong uop, ulong count, HypercallAbi abi = HypercallAbi.Native64) =>
        Call(caller, cmd, uop, count, abi, out _);

    private long Call(TestDomain caller, ulong cmd, ulong uop, ulong count, HypercallAbi abi, out HypercallArguments after) =>
        GrantTableCall.Invoke(_dispatcher, caller, cmd, uop, count, abi, out after);

    [Theory]
    [InlineData(GrantTableOp.DumpTable)]
    [InlineData(GrantTableOp.Transfer)]
    [InlineData(GrantTableOp.UnmapAndReplace)]
    [InlineData(GrantTableOp.GetStatusFrames)]
    [InlineData(GrantTableOp.CacheFlush)]
    [InlineData((GrantTableOp)13)]
    [InlineData((GrantTableOp)(0x1000 | 5))]
    public void Commands_Xen_does_not_offer_HVM_guests_return_ENOSYS(GrantTableOp cmd) =>
        Assert.Equal(XenErrno.ENOSYS.Negated(), Call(_back, (ulong)cmd, Buffer, 1));

    [Fact]
    public void Bad_counts_and_pointers()
    {
        Assert.Equal(XenErrno.EINVAL.Negated(), Call(_back, (ulong)GrantTableOp.Copy, Buffer, 0x8000_0000));
        Assert.Equal(XenErrno.EINVAL.Negated(), Call(_back, (ulong)GrantTableOp.SetupTable, Buffer, 2));
        Assert.Equal(XenErrno.EINVAL.Negated(), Call(_back, (ulong)GrantTableOp.QuerySize, Buffer, 0));
        Assert.Equal(XenErrno.EFAULT.Negated(), Call(_back, (ulong)GrantTableOp.MapGrantRef, 0x7000_0000_0000, 1));
        Assert.Equal(XenErrno.EFAULT.Negated(), Call(_back, (ulong)GrantTableOp.QuerySize, 0x7000_0000_0000, 1));
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.Copy, 0x7000_0000_0000, 0));
        _back.Dead = true;
        Assert.Equal(XenErrno.ENOSYS.Negated(), Call(_back, (ulong)GrantTableOp.QuerySize, Buffer, 1));
    }

    [Fact]
    public void Map_copy_unmap_through_the_hypercall()
    {
        _front.RamPage(5).Fill(0x3C);
        Assert.True(_share.TryGrantForeignAccess(2, 5, false, out uint gref));
        Put(_back, Buffer, new GnttabMapGrantRef { HostAddr = 0x1000UL << 12, Flags = (uint)GrantMapFlags.HostMap, Ref = gref, Dom = 1 });
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.MapGrantRef, Buffer, 1));
        var map = Get<GnttabMapGrantRef>(_back, Buffer);
        Assert.Equal(0, map.Status);
        Assert.Equal(_front.Ram[5].Address, map.DevBusAddr);

        var copy = new GnttabCopy
        {
            Source = new() { Ref = gref, DomId = 1, Offset = 0 },
            Dest = new() { Gmfn = 7, DomId = DomainId.Self, Offset = 8 },
            Len = 16,
            Flags = (ushort)GrantCopyFlags.SourceGref,
        };
        Put(_back, Buffer + 0x100, copy);
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.Copy, Buffer + 0x100, 1));
        Assert.Equal(0, Get<GnttabCopy>(_back, Buffer + 0x100).Status);
        Assert.Equal(0x3C, _back.RamPage(7)[8]);

        Put(_back, Buffer + 0x200, new GnttabUnmapGrantRef { HostAddr = 0x1000UL << 12, Handle = map.Handle, Status = 99 });
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.UnmapGrantRef, Buffer + 0x200, 1));
        Assert.Equal(0, Get<GnttabUnmapGrantRef>(_back, Buffer + 0x200).Status);
        Assert.False(_share.IsForeignAccessInUse(gref));
    }

    [Fact]
    public void A_32_bit_caller_uses_the_compat_layouts()
    {
        _front.RamPage(5).Fill(0x44);
        Assert.True(_share.TryGrantForeignAccess(2, 5, true, out uint gref));
        var copy = new CompatGnttabCopy
        {
            Source = new() { Ref = gref, DomId = 1 },
            Dest = new() { Gmfn = 9, DomId = DomainId.Self, Offset = 1 },
            Len = 4,
            Flags = (ushort)GrantCopyFlags.SourceGref,
        };
        Put(_back, Buffer, copy);
        Put(_back, Buffer + 24, copy with { Len = 5000 });
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.Copy, Buffer, 2, HypercallAbi.Compat32));
        Assert.Equal(0, Get<CompatGnttabCopy>(_back, Buffer).Status);
        Assert.Equal((short)GrantStatus.BadCopyArg, Get<CompatGnttabCopy>(_back, Buffer + 24).Status);
        Assert.Equal(0x44, _back.RamPage(9)[4]);

        Assert.Equal(0, _m.Host.AddToPhysmap(_back.Grant, 1, new Ept.GuestFrameNumber(0x2001)));
        Assert.Equal(0, _m.Host.AddToPhysmap(_back.Grant, 0, new Ept.GuestFrameNumber(0x2000)));
        Put(_back, Buffer + 0x100, new CompatGnttabSetupTable { Dom = DomainId.Self, NrFrames = 2, FrameList = (uint)(Buffer + 0x200) });
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.SetupTable, Buffer + 0x100, 1, HypercallAbi.Compat32));
        Assert.Equal(0, Get<CompatGnttabSetupTable>(_back, Buffer + 0x100).Status);
        Assert.Equal(0x2000u, Get<uint>(_back, Buffer + 0x200));
        Assert.Equal(0x2001u, Get<uint>(_back, Buffer + 0x204));

        Put(_back, Buffer + 0x300, new GnttabSetupTable { Dom = DomainId.Self, NrFrames = 2, FrameList = Buffer + 0x400 });
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.SetupTable, Buffer + 0x300, 1));
        Assert.Equal(0x2001UL, Get<ulong>(_back, Buffer + 0x408));
        Put(_back, Buffer + 0x300, new GnttabSetupTable { Dom = DomainId.Self, NrFrames = 2, FrameList = 0x7000_0000_0000 });
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.SetupTable, Buffer + 0x300, 1));
        Assert.Equal((short)GrantStatus.BadVirtAddr, Get<GnttabSetupTable>(_back, Buffer + 0x300).Status);
    }

    [Fact]
    public void Version_and_size_queries()
    {
        Put(_back, Buffer, new GnttabSetVersion { Version = 2 });
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.SetVersion, Buffer, 1));
        Put(_back, Buffer + 8, new GnttabGetVersion { Dom = DomainId.Self });
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.GetVersion, Buffer + 8, 1));
        Assert.Equal(2u, Get<GnttabGetVersion>(_back, Buffer + 8).Version);
        Put(_back, Buffer + 8, new GnttabGetVersion { Dom = 1 });
        Assert.Equal(XenErrno.EPERM.Negated(), Call(_back, (ulong)GrantTableOp.GetVersion, Buffer + 8, 1));
        Put(_back, Buffer, new GnttabSetVersion { Version = 7 });
        Assert.Equal(XenErrno.EINVAL.Negated(), Call(_back, (ulong)GrantTableOp.SetVersion, Buffer, 1));
        Assert.Equal(2u, Get<GnttabSetVersion>(_back, Buffer).Version);
        Put(_back, Buffer + 16, new GnttabQuerySize { Dom = DomainId.Self });
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.QuerySize, Buffer + 16, 1));
        Assert.Equal((1u, 64u), (Get<GnttabQuerySize>(_back, Buffer + 16).NrFrames, Get<GnttabQuerySize>(_back, Buffer + 16).MaxNrFrames));
    }

    [Fact]
    public void Long_batches_continue_where_they_stopped()
    {
        const int count = 5;
        for (int i = 0; i < count; i++)
        {
            Put(_back, Buffer + ((ulong)i * 40), new GnttabCopy
            {
                Source = new() { Gmfn = 3, DomId = DomainId.Self },
                Dest = new() { Gmfn = 4, DomId = DomainId.Self, Offset = (ushort)i },
                Len = 1,
                Status = 99,
            });
        }

        int checks = 0;
        _dispatcher.PreemptCheck = _ => ++checks % 2 == 0; // preempt at every other check
        ulong cmd = (ulong)GrantTableOp.Copy, uop = Buffer, n = count;
        int rounds = 0;
        while (true)
        {
            long rc = Call(_back, cmd, uop, n, HypercallAbi.Native64, out HypercallArguments after);
            rounds++;
            if (rc == 0)
            {
                break;
            }

            Assert.Equal((long)HypercallNumber.GrantTableOp, rc);
            Assert.Equal(cmd, after[0]);
            Assert.True(after[1] > uop && after[2] < n);
            Assert.Equal(uop + ((n - after[2]) * 40), after[1]);
            (uop, n) = (after[1], after[2]);
        }

        Assert.True(rounds > 1);
        for (int i = 0; i < count; i++)
        {
            Assert.Equal(0, Get<GnttabCopy>(_back, Buffer + ((ulong)i * 40)).Status);
        }
    }

    [Fact]
    public void A_copy_into_the_operation_array_changes_the_operations_that_follow_as_in_Xen()
    {
        // gnttab_copy reads each operation just before it runs it: operation 0 overwrites operation 1 in the array
        // with a copy to frame 10 instead of frame 11, and that is what runs.
        const ulong frames = 30; // where the replacement operation waits, in frame 30 of the caller
        _back.RamPage(9).Fill(0x5D);
        GnttabCopy Op(ulong from, ushort fromOffset, ulong to, ushort toOffset, ushort len) => new()
        {
            Source = new() { Gmfn = from, DomId = DomainId.Self, Offset = fromOffset },
            Dest = new() { Gmfn = to, DomId = DomainId.Self, Offset = toOffset },
            Len = len,
            Status = 99,
        };
        Put(_back, frames << 12, Op(9, 0, 10, 0, 4));
        Put(_back, Buffer, Op(frames, 0, Buffer >> 12, 40, 40));
        Put(_back, Buffer + 40, Op(9, 0, 11, 0, 4));
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.Copy, Buffer, 2));
        Assert.Equal((short)0, Get<GnttabCopy>(_back, Buffer).Status);
        Assert.Equal((short)0, Get<GnttabCopy>(_back, Buffer + 40).Status);
        Assert.Equal(10UL, Get<GnttabCopy>(_back, Buffer + 40).Dest.Gmfn);
        Assert.Equal([0x5D, 0x5D, 0x5D, 0x5D, 0], _back.RamPage(10)[..5].ToArray());
        Assert.Equal(new byte[5], _back.RamPage(11)[..5].ToArray());
    }

    [Fact]
    public void A_status_that_cannot_be_written_fails_the_call_right_after_its_operation_ran()
    {
        // gnttab_copy: the operation runs, then its status cannot be copied back: -EFAULT, and no later operation runs.
        _back.RamPage(9).Fill(0x6E);
        for (int i = 0; i < 2; i++)
        {
            Put(_back, Buffer + ((ulong)i * 40), new GnttabCopy
            {
                Source = new() { Gmfn = 9, DomId = DomainId.Self },
                Dest = new() { Gmfn = (ulong)(12 + i), DomId = DomainId.Self },
                Len = 8,
                Status = 99,
            });
        }

        _back.Ept.Protect(new GuestPhysicalAddress(Buffer), 1, EptAccess.Read); // the array is readable, not writable
        Assert.Equal(XenErrno.EFAULT.Negated(), Call(_back, (ulong)GrantTableOp.Copy, Buffer, 2));
        Assert.Equal(0x6E, _back.RamPage(12)[7]);
        Assert.Equal(0, _back.RamPage(13)[0]);
        Assert.Equal((short)99, Get<GnttabCopy>(_back, Buffer).Status);
    }

    // However a copy call ends, nothing it claimed stays claimed: one hold of the host's lock or several (a hold runs
    // up to 16 operations), the last hold ending on a boundary or not, a status that cannot be written stopping the
    // call. Every operation copies from the same grant, so the claim lasts across holds; after the call the grant is
    // unpinned with GTF_reading clear, and no frame reference is left: the granter's free of the frame completes at once.
    [Theory]
    [InlineData(HypercallAbi.Native64, 1, false)]
    [InlineData(HypercallAbi.Native64, 16, false)]
    [InlineData(HypercallAbi.Native64, 17, false)]
    [InlineData(HypercallAbi.Native64, 33, false)]
    [InlineData(HypercallAbi.Native64, 20, true)]
    [InlineData(HypercallAbi.Native64, 17, true)]
    [InlineData(HypercallAbi.Compat32, 1, false)]
    [InlineData(HypercallAbi.Compat32, 17, false)]
    [InlineData(HypercallAbi.Compat32, 20, true)]
    public void A_copy_call_leaves_no_claim_and_no_frame_reference_however_it_ends(HypercallAbi abi, int count, bool statusFault)
    {
        Assert.True(_share.TryGrantForeignAccess(2, 5, readOnly: true, out uint gref));
        _front.RamPage(5).Fill(0x5A);
        int size = abi == HypercallAbi.Native64 ? 40 : System.Runtime.CompilerServices.Unsafe.SizeOf<CompatGnttabCopy>(); // 24 bytes, compat

        // The 17th operation starts the next page; with statusFault that page is read-only, so its status cannot be
        // written back.
        ulong uop = Buffer + 4096 - (16UL * (ulong)size);
        for (int i = 0; i < count; i++)
        {
            ulong at = uop + ((ulong)i * (ulong)size);
            var op = new GnttabCopy
            {
                Source = new() { Ref = gref, DomId = 1, Offset = (ushort)(i * 8) },
                Dest = new() { Gmfn = 12, DomId = DomainId.Self, Offset = (ushort)(i * 8) },
                Len = 8,
                Flags = (ushort)GrantCopyFlags.SourceGref,
                Status = 99,
            };
            if (abi == HypercallAbi.Native64)
            {
                Put(_back, at, op);
            }
            else
            {
                Put(_back, at, new CompatGnttabCopy
                {
                    Source = new() { Ref = op.Source.Ref, DomId = op.Source.DomId, Offset = op.Source.Offset },
                    Dest = new() { Gmfn = (uint)op.Dest.Gmfn, DomId = op.Dest.DomId, Offset = op.Dest.Offset },
                    Len = op.Len,
                    Flags = op.Flags,
                    Status = op.Status,
                });
            }
        }

        if (statusFault)
        {
            _back.Ept.Protect(new GuestPhysicalAddress(Buffer + 4096), 1, EptAccess.Read);
        }

        long rc = Call(_back, (ulong)GrantTableOp.Copy, uop, (ulong)count, abi);
        Assert.Equal(statusFault ? XenErrno.EFAULT.Negated() : 0, rc);
        Assert.Equal(0x5A, _back.RamPage(12)[(Math.Min(count, 17) * 8) - 1]); // the operations up to the 17th ran

        Assert.Equal(0u, _front.Grant.GetPinCount(gref));
        ushort flags = BitConverter.ToUInt16(_m.Memory.GetFrame(_front.Grant.GetSharedFrame(0)).Slice((int)gref * GrantEntryV1.Size, 2));
        Assert.Equal(0, flags & (ushort)(GrantEntryFlags.Reading | GrantEntryFlags.Writing));
        MachineFrameNumber frame = _front.Ram[5];
        _front.Ept.Unmap(new GuestFrameNumber(5).Address, 1);
        GuestPhysicalMemory.InvalidateSingleContext(_m.Memory, _front.Ept.Pointer);
        _m.Frames.Free(frame);
        Assert.False(_m.Frames.IsFreePending(frame));
        Assert.False(_m.Memory.TryGetOwner(frame, out _));
    }

    private static CompatGnttabCopy CompatFrameCopy(uint from, uint to, ushort toOffset, ushort len) => new()
    {
        Source = new() { Gmfn = from, DomId = DomainId.Self },
        Dest = new() { Gmfn = to, DomId = DomainId.Self, Offset = toOffset },
        Len = len,
        Status = 99,
    };

    // ---------------------------------------------------------------- table management

    [Fact]
    public void A_status_frame_index_past_the_status_frames_grows_the_table_under_v2()
    {
        // gnttab_map_frame -> gnttab_get_status_frame_mfn: idx >= nr_status_frames grows the table to
        // status_to_grant_frames(idx + 1) shared frames when that is within max_grant_frames, then maps status frame idx.
        var v = new GnttabSetVersion { Version = 2 };
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));
        Assert.Equal((1, 1), (_front.Grant.SharedFrameCount, _front.Grant.StatusFrameCount));

        var gfn = new GuestFrameNumber(0x3000);
        Assert.Equal(0, _m.Host.AddToPhysmap(_front.Grant, GrantTableHost.GrantTableStatusIndex | 1, gfn));
        Assert.Equal((16, 2), (_front.Grant.SharedFrameCount, _front.Grant.StatusFrameCount));
        Assert.True(_front.Ept.TryLookup(gfn, out MachineFrameNumber f, out _));
        Assert.Equal(_front.Grant.GetStatusFrame(1), f);

        // Status frame 8 would need 72 shared frames, past max_grant_frames (64): -EINVAL, nothing grows.
        Assert.Equal(XenErrno.EINVAL.Negated(), _m.Host.AddToPhysmap(_front.Grant, GrantTableHost.GrantTableStatusIndex | 8, new GuestFrameNumber(0x3001)));
        Assert.Equal(16, _front.Grant.SharedFrameCount);
    }

    [Fact]
    public void A_status_frame_index_drops_the_bits_above_31_as_gnttab_map_frame_does()
    {
        // gnttab_map_frame: under v2, an idx with XENMAPIDX_grant_table_status names status frame
        // idx & ~XENMAPIDX_grant_table_status, and the constant is an unsigned int, so bits 31 to 63 all go: a 64-bit
        // caller's idx 0xFFFF_FFFF_8000_0000 is status frame 0. (A shared-frame index keeps its low 32 bits:
        // Xen417SourceTests.A_shared_frame_index_keeps_its_low_32_bits_only.)
        var v = new GnttabSetVersion { Version = 2 };
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));
        var gfn = new GuestFrameNumber(0x3000);
        Assert.Equal(0, _m.Host.AddToPhysmap(_front.Grant, 0xFFFF_FFFF_8000_0000, gfn));
        Assert.True(_front.Ept.TryLookup(gfn, out MachineFrameNumber f, out _));
        Assert.Equal(_front.Grant.GetStatusFrame(0), f);
        Assert.Equal(0, _m.Host.GetTableFrame(_front.Grant, (1UL << 32) | GrantTableHost.GrantTableStatusIndex, out MachineFrameNumber g));
        Assert.Equal(_front.Grant.GetStatusFrame(0), g);
        Assert.Equal((1, 1), (_front.Grant.SharedFrameCount, _front.Grant.StatusFrameCount));
    }

    [Fact]
    public void Placing_a_table_frame_over_a_foreign_grant_mapping_fails_with_ENXIO()
    {
        // xenmem_add_to_physmap_one: the slot's previous MFN is valid and not special, so guest_remove_page(d, gpfn)
        // runs; get_page(page, d) fails on the granter's page and it returns -ENXIO. Nothing changes.
        Assert.True(_share.TryGrantForeignAccess(2, 5, false, out uint gref));
        const ulong mapGfn = 0x1000;
        var map = new GnttabMapGrantRef { HostAddr = mapGfn << 12, Flags = (uint)GrantMapFlags.HostMap, Ref = gref, Dom = 1 };
        _m.Host.MapGrantRef(_back.Grant, ref map);
        Assert.Equal(0, map.Status);

        Assert.Equal(XenErrno.ENXIO.Negated(), _m.Host.AddToPhysmap(_back.Grant, 0, new GuestFrameNumber(mapGfn)));
        Assert.True(_back.Ept.TryLookup(new GuestFrameNumber(mapGfn), out MachineFrameNumber f, out _));
        Assert.Equal(_front.Ram[5], f);
    }

    [Fact]
    public void Set_version_is_busy_while_a_copy_call_of_a_grantee_holds_the_grant_between_operations()
    {
        // gnttab_copy keeps the source buffer (and its pin, acquire_grant_for_copy) across operations of one call;
        // gnttab_set_version sees the pin on an entry past the reserved ones and returns -EBUSY.
        _front.RamPage(5).Fill(0x21);
        Assert.True(_share.TryGrantForeignAccess(2, 5, true, out uint gref));
        for (int i = 0; i < 2; i++)
        {
            Put(_back, Buffer + ((ulong)i * 40), new GnttabCopy
            {
                Source = new() { Ref = gref, DomId = 1 },
                Dest = new() { Gmfn = (ulong)(7 + i), DomId = DomainId.Self },
                Len = 8,
                Flags = (ushort)GrantCopyFlags.SourceGref,
                Status = 99,
            });
        }

        long setVersion = 1;
        uint versionAfter = 0;
        _dispatcher.PreemptCheck = _ =>
        {
            var v = new GnttabSetVersion { Version = 2 };
            setVersion = _m.Host.SetVersion(_front.Grant, ref v);
            versionAfter = v.Version;
            return false;
        };
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.Copy, Buffer, 2));
        Assert.Equal(XenErrno.EBUSY.Negated(), setVersion);
        Assert.Equal(1u, versionAfter);
        Assert.Equal(0x21, _back.RamPage(8)[7]);
    }

    // ---------------------------------------------------------------- hypercall layer, compat ABI

    [Fact]
    public void Compat_copy_a_fault_reading_any_operation_of_a_chunk_runs_none_of_the_chunk()
    {
        // compat_grant_table_op, GNTTABOP_copy: all operations of a chunk (COMPAT_ARG_XLAT_SIZE / sizeof(gnttab_copy))
        // are read and translated first; a fault on any of them gives -EFAULT before gnttab_copy runs, and no status
        // is written back.
        _back.RamPage(9).Fill(0x4B);
        const ulong end = (ulong)TestMachine.RamFrames << 12; // gfn 64 is not mapped
        ulong op0 = end - 24 - 12;                            // whole, in gfn 63; operation 1 straddles into gfn 64
        Put(_back, op0, CompatFrameCopy(9, 12, 0, 8));
        Assert.False(_back.TryRead(op0 + 24, new byte[24]));
        Assert.Equal(XenErrno.EFAULT.Negated(), Call(_back, (ulong)GrantTableOp.Copy, op0, 2, HypercallAbi.Compat32));
        Assert.Equal(0, _back.RamPage(12)[0]);
        Assert.Equal((short)99, Get<CompatGnttabCopy>(_back, op0).Status);
    }

    [Fact]
    public void Compat_copy_operations_are_read_before_any_runs_so_a_copy_into_the_array_changes_none()
    {
        // compat_grant_table_op translates the chunk into the xlat area before gnttab_copy runs it: operation 0
        // overwriting operation 1 in guest memory does not change what operation 1 does (the native ABI, which reads
        // each operation just before it runs, differs: HypercallTests covers it).
        const ulong frames = 30; // the replacement operation waits at the start of frame 30
        _back.RamPage(9).Fill(0x5D);
        Put(_back, frames << 12, CompatFrameCopy(9, 10, 0, 4));
        Put(_back, Buffer, CompatFrameCopy((uint)frames, (uint)(Buffer >> 12), 24, 24));
        Put(_back, Buffer + 24, CompatFrameCopy(9, 11, 0, 4));
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.Copy, Buffer, 2, HypercallAbi.Compat32));
        Assert.Equal((short)0, Get<CompatGnttabCopy>(_back, Buffer + 24).Status);
        Assert.Equal([0x5D, 0x5D, 0x5D, 0x5D, 0], _back.RamPage(11)[..5].ToArray());
        Assert.Equal(new byte[5], _back.RamPage(10)[..5].ToArray());
    }

    [Fact]
    public void Compat_copy_an_unwritable_status_does_not_stop_the_rest_of_the_chunk()
    {
        // compat_grant_table_op: gnttab_copy runs the whole translated chunk, then every status is copied back
        // (a failing copy-back sets rc = -EFAULT and the loop goes on); every operation of the chunk has run.
        _back.RamPage(9).Fill(0x6E);
        Put(_back, Buffer, CompatFrameCopy(9, 12, 0, 8));
        Put(_back, Buffer + 24, CompatFrameCopy(9, 13, 0, 8));
        _back.Ept.Protect(new GuestPhysicalAddress(Buffer), 1, EptAccess.Read);
        Assert.Equal(XenErrno.EFAULT.Negated(), Call(_back, (ulong)GrantTableOp.Copy, Buffer, 2, HypercallAbi.Compat32));
        Assert.Equal(0x6E, _back.RamPage(12)[7]);
        Assert.Equal(0x6E, _back.RamPage(13)[7]);
    }

    [Fact]
    public void Compat_copy_checks_for_preemption_within_a_chunk_only_and_continues_at_the_first_operation_not_run()
    {
        // compat_grant_table_op runs 8192 / sizeof(struct gnttab_copy) = 204 operations per gnttab_copy call, which
        // checks for preemption between its operations only, and releases its buffers when it returns. Preempted
        // before operation 1 of the second chunk (205 overall), the statuses of the 205 operations run are written
        // back and the continuation has uop advanced by 205 operations, count 1.
        const uint count = 206;
        _front.RamPage(5).Fill(0x7A);
        Assert.True(_share.TryGrantForeignAccess(2, 5, true, out uint gref));
        for (uint i = 0; i < count; i++)
        {
            Put(_back, Buffer + (i * 24), new CompatGnttabCopy
            {
                Source = new() { Ref = gref, DomId = 1 },
                Dest = new() { Gmfn = 10, DomId = DomainId.Self, Offset = (ushort)i },
                Len = 1,
                Flags = (ushort)GrantCopyFlags.SourceGref,
                Status = 99,
            });
        }

        int checks = 0;
        _dispatcher.PreemptCheck = _ => ++checks == 204;
        long rc = Call(_back, (ulong)GrantTableOp.Copy, Buffer, count, HypercallAbi.Compat32, out HypercallArguments after);
        Assert.Equal((long)HypercallNumber.GrantTableOp, rc);
        Assert.Equal(204, checks); // 203 in the first chunk, none before the second, one in it
        Assert.Equal(((ulong)GrantTableOp.Copy, Buffer + (205 * 24), 1UL), (after[0], after[1], after[2]));
        Assert.Equal((short)0, Get<CompatGnttabCopy>(_back, Buffer + (204 * 24)).Status);
        Assert.Equal((short)99, Get<CompatGnttabCopy>(_back, Buffer + (205 * 24)).Status);
        Assert.Equal(0x7A, _back.RamPage(10)[204]);
        Assert.Equal(0, _back.RamPage(10)[205]);
        Assert.Equal(0u, _front.Grant.GetPinCount(gref));
    }

    [Fact]
    public void Compat_setup_table_answers_address_too_big_for_a_frame_number_past_32_bits()
    {
        // compat_grant_table_op, GNTTABOP_setup_table: each frame number gnttab_setup_table reported is narrowed to
        // compat_pfn_t; one that does not fit (a frame placed above 2^32, or INVALID_GFN for one not placed) sets
        // GNTST_address_too_big and ends the copy-out: no truncated frame number reaches the guest.
        Assert.Equal(0, _m.Host.AddToPhysmap(_back.Grant, 0, new GuestFrameNumber(0x2000)));
        Assert.Equal(GrantStatus.Okay, _m.Host.SetupTable(_back.Grant, false, DomainId.Self, 3, new ulong[3]));
        Assert.Equal(0, _m.Host.AddToPhysmap(_back.Grant, 1, new GuestFrameNumber(1UL << 32)));
        const ulong list = Buffer + 0x200;
        for (ulong i = 0; i < 3; i++)
        {
            Put(_back, list + (i * 4), 0xAAAA_AAAAu);
        }

        Put(_back, Buffer + 0x100, new CompatGnttabSetupTable { Dom = DomainId.Self, NrFrames = 3, FrameList = (uint)list, Status = 99 });
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.SetupTable, Buffer + 0x100, 1, HypercallAbi.Compat32));
        Assert.Equal((short)GrantStatus.AddressTooBig, Get<CompatGnttabSetupTable>(_back, Buffer + 0x100).Status);
        Assert.Equal((0x2000u, 0xAAAA_AAAAu, 0xAAAA_AAAAu), (Get<uint>(_back, list), Get<uint>(_back, list + 4), Get<uint>(_back, list + 8)));

        // Frame 2 was never placed: INVALID_GFN does not fit either.
        Put(_back, Buffer + 0x100, new CompatGnttabSetupTable { Dom = DomainId.Self, NrFrames = 3, FrameList = (uint)list, Status = 99 });
        Assert.Equal(0, _m.Host.AddToPhysmap(_back.Grant, 1, new GuestFrameNumber(0x2001)));
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.SetupTable, Buffer + 0x100, 1, HypercallAbi.Compat32));
        Assert.Equal((short)GrantStatus.AddressTooBig, Get<CompatGnttabSetupTable>(_back, Buffer + 0x100).Status);
        Assert.Equal((0x2000u, 0x2001u, 0xAAAA_AAAAu), (Get<uint>(_back, list), Get<uint>(_back, list + 4), Get<uint>(_back, list + 8)));

        // The 64-bit layout has room for every frame number: INVALID_GFN is reported as it is.
        Put(_back, Buffer + 0x300, new GnttabSetupTable { Dom = DomainId.Self, NrFrames = 3, FrameList = Buffer + 0x400 });
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.SetupTable, Buffer + 0x300, 1));
        Assert.Equal(0, Get<GnttabSetupTable>(_back, Buffer + 0x300).Status);
        Assert.Equal(GrantTableHost.InvalidFrame, Get<ulong>(_back, Buffer + 0x410));
    }

    [Fact]
    public void Compat_setup_table_stops_at_a_frame_it_cannot_write_and_copies_the_whole_op_back()
    {
        // compat_grant_table_op: a frame number that cannot be written sets GNTST_bad_virt_addr and ends the copy-out
        // (the native gnttab_setup_table goes on with the next frame); then the whole compat structure is copied back,
        // so an op whose last bytes cannot be written answers -EFAULT, after the table has been set up.
        Assert.Equal(0, _m.Host.AddToPhysmap(_back.Grant, 0, new GuestFrameNumber(0x2000)));
        Assert.Equal(0, _m.Host.AddToPhysmap(_back.Grant, 1, new GuestFrameNumber(0x2001)));
        const ulong list = Buffer + 0x3000 - 4; // frame 0 in a read-only page, frame 1 in the next, writable
        Put(_back, list + 4, 0xAAAA_AAAAu);
        Put(_back, Buffer + 0x1000, new CompatGnttabSetupTable { Dom = DomainId.Self, NrFrames = 2, FrameList = (uint)list, Status = 99 });
        _back.Ept.Protect(new GuestPhysicalAddress(Buffer + 0x2000), 1, EptAccess.Read);
        Assert.Equal(0, Call(_back, (ulong)GrantTableOp.SetupTable, Buffer + 0x1000, 1, HypercallAbi.Compat32));
        Assert.Equal((short)GrantStatus.BadVirtAddr, Get<CompatGnttabSetupTable>(_back, Buffer + 0x1000).Status);
        Assert.Equal(0xAAAA_AAAAu, Get<uint>(_back, list + 4));

        // The op ends 4 bytes into a read-only page: its status is writable, its frame_list is not.
        const ulong op = Buffer + 0x5000 - 12;
        Put(_back, op, new CompatGnttabSetupTable { Dom = DomainId.Self, NrFrames = 2, FrameList = (uint)(Buffer + 0x100), Status = 99 });
        _back.Ept.Protect(new GuestPhysicalAddress(Buffer + 0x5000), 1, EptAccess.Read);
        Assert.Equal(XenErrno.EFAULT.Negated(), Call(_back, (ulong)GrantTableOp.SetupTable, op, 1, HypercallAbi.Compat32));
        Assert.Equal(0x2001u, Get<uint>(_back, Buffer + 0x104));
    }

    [Fact]
    public void Compat_setup_table_is_bounded_by_the_translation_area()
    {
        // compat_grant_table_op passes limit_max = (COMPAT_ARG_XLAT_SIZE - sizeof(struct gnttab_setup_table)) /
        // sizeof(xen_pfn_t) = (8192 - 24) / 8 = 1021 to gnttab_setup_table, which answers GNTST_general_error
        // for more frames, before growing anything.
        using var m = new TestMachine(hostLimits: new GrantTableLimits(1024, 1024));
        var big = m.AddDomain(3, new GrantTableLimits(1024, 1));
        var dispatcher = new HypercallDispatcher<TestDomain>();
        new GrantTableHypercalls<TestDomain>(m.Host, new TestResolver()).Register(dispatcher);
        Put(big, Buffer, new CompatGnttabSetupTable { Dom = DomainId.Self, NrFrames = 1022, FrameList = (uint)(Buffer + 0x100) });
        HypercallArguments args = default;
        args[0] = (ulong)GrantTableOp.SetupTable;
        args[1] = Buffer;
        args[2] = 1;
        HypercallCall<TestDomain> call = dispatcher.CreateCall(big, (uint)HypercallNumber.GrantTableOp, HypercallAbi.Compat32, big.Virtual, args);
        Assert.Equal(0, dispatcher.Invoke(ref call));
        Assert.Equal((short)GrantStatus.GeneralError, Get<CompatGnttabSetupTable>(big, Buffer).Status);
        Assert.Equal(1, big.Grant.SharedFrameCount);
    }
}
