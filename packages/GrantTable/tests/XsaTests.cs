using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// One test per class of Xen grant-table security advisory (XSA): what the bug was in Xen, and a test showing
/// that this implementation cannot have it.
/// </summary>
public sealed class XsaTests : IDisposable
{
    private const ulong MapGfn = 0x1000;
    private readonly TestMachine _m = new();
    private readonly TestDomain _front;
    private readonly TestDomain _back;
    private readonly InProcessGrantShare _share;

    public XsaTests()
    {
        _front = _m.AddDomain(1);
        _back = _m.AddDomain(2);
        _share = new InProcessGrantShare(_m.Host, _front.Grant);
    }

    public void Dispose() => _m.Dispose();

    private uint Grant(int gfn, bool readOnly = false)
    {
        Assert.True(_share.TryGrantForeignAccess(2, (ulong)gfn, readOnly, out uint gref));
        return gref;
    }

    private GnttabMapGrantRef Map(uint gref, ulong gfn = MapGfn, GrantMapFlags flags = GrantMapFlags.HostMap) =>
        _m.MapGrant(_back, 1, gref, gfn, flags);

    private short Unmap(uint handle, ulong gfn, ulong devBusAddr = 0)
    {
        var op = new GnttabUnmapGrantRef { HostAddr = gfn << 12, DevBusAddr = devBusAddr, Handle = handle };
        _m.Host.UnmapGrantRef(_back.Grant, ref op);
        return op.Status;
    }

    /// <summary>
    /// XSA-218 "Races in the grant table unmap code": two unmaps of the same handle on two vCPUs could both pass the
    /// check of the maptrack entry and both drop the pin count and page reference. Here the check and the release happen
    /// under one lock and the entry is cleared before its handle is freed: exactly one unmap wins.
    /// </summary>
    [Fact]
    public void Xsa218_concurrent_unmaps_of_one_handle_release_once()
    {
        uint gref = Grant(5);
        for (int round = 0; round < 200; round++)
        {
            GnttabMapGrantRef m = Map(gref);
            Assert.Equal(0, m.Status);
            short[] results = new short[4];
            Parallel.For(0, results.Length, i => results[i] = Unmap(m.Handle, MapGfn));
            Assert.Equal(1, results.Count(r => r == 0));
            Assert.Equal(3, results.Count(r => r == (short)GrantStatus.BadHandle));
            Assert.Equal(0u, _front.Grant.GetPinCount(gref));
            Assert.Equal(0, _m.Frames.ReferenceCount(_front.Ram[5]));
        }

        Assert.True(_share.EndForeignAccess(gref));
    }

    /// <summary>
    /// XSA-224 "grant table operations mishandle reference counts": among its bugs, an unmap naming one handle but the
    /// address of another mapping removed the wrong mapping while dropping the first one's counts; a bad dev_bus_addr
    /// left counts half-dropped; a map without GNTMAP_host_map still created a host mapping. Here an unmap must name
    /// the handle's own address or nothing changes (dev_bus_addr concerns device mappings only, which HVM grantees
    /// cannot make: it is ignored, as in Xen 4.17's unmap_common), and HVM maps need exactly host_map.
    /// </summary>
    [Fact]
    public void Xsa224_unmap_with_a_foreign_address_changes_nothing()
    {
        uint gref = Grant(5);
        GnttabMapGrantRef a = Map(gref);
        GnttabMapGrantRef b = Map(gref, MapGfn + 1);
        Assert.Equal((0, 0), (a.Status, b.Status));
        Assert.Equal(2 * ActiveGrantEntry.HostWriteIncrement, _front.Grant.GetPinCount(gref));

        Assert.Equal((short)GrantStatus.GeneralError, Unmap(a.Handle, MapGfn + 1));        // b's address with a's handle
        Assert.Equal(2 * ActiveGrantEntry.HostWriteIncrement, _front.Grant.GetPinCount(gref));
        Assert.Equal(2, _m.Frames.ReferenceCount(_front.Ram[5]));
        Assert.True(_back.Ept.TryLookup(new GuestFrameNumber(MapGfn), out _, out _));
        Assert.True(_back.Ept.TryLookup(new GuestFrameNumber(MapGfn + 1), out _, out _));

        Assert.Equal((short)GrantStatus.GeneralError, Map(gref, MapGfn + 2, GrantMapFlags.DeviceMap).Status);
        Assert.False(_back.Ept.TryLookup(new GuestFrameNumber(MapGfn + 2), out _, out _));

        Assert.Equal(0, Unmap(a.Handle, MapGfn, 0xdead000)); // any bus address: no device mapping
        Assert.Equal(0, Unmap(b.Handle, MapGfn + 1));
        Assert.Equal(0u, _front.Grant.GetPinCount(gref));
        Assert.Equal(0, _m.Frames.ReferenceCount(_front.Ram[5]));
        Assert.False(_share.IsForeignAccessInUse(gref));
    }

    /// <summary>
    /// XSA-226 "Multiple problems with transitive grants": transitive grants (v2 entries passing on another domain's
    /// grant) could form loops and leak pin counts; Xen's fix made them optional (gnttab=transitive). This
    /// implementation does not accept transitive grants at all: map and copy refuse them without touching any count.
    /// </summary>
    [Fact]
    public void Xsa226_transitive_grants_are_refused()
    {
        var v = new GnttabSetVersion { Version = 2 };
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));
        unsafe
        {
            var e = (GrantEntryV2*)_m.Memory.GetFramePointer(_front.Grant.GetSharedFrame(0)) + 20;
            e->DomId = 2;
            e->TransDomId = 1; // self-referential, the loop case
            e->TransGref = 20;
            e->Flags = (ushort)GrantEntryFlags.Transitive;
        }

        Assert.Equal((short)GrantStatus.GeneralError, Map(20).Status);
        Span<GnttabCopy> ops = [new() { Source = new() { Ref = 20, DomId = 1 }, Dest = new() { Gmfn = 3, DomId = DomainId.Self }, Len = 8, Flags = (ushort)GrantCopyFlags.SourceGref }];
        _m.Host.Copy(_back.Grant, ops);
        Assert.Equal((short)GrantStatus.GeneralError, ops[0].Status);
        Assert.Equal(0u, _front.Grant.GetPinCount(20));
        unsafe
        {
            var status = (ushort*)_m.Memory.GetFramePointer(_front.Grant.GetStatusFrame(0));
            Assert.Equal(0, status[20]);
        }
    }

    /// <summary>
    /// XSA-228 "Race conditions with maptrack free list handling": concurrent map and unmap on several vCPUs corrupted
    /// the lock-free maptrack free list, so one handle could be handed out twice. Here the free list is only touched
    /// under the lock: many threads mapping and unmapping never see a live handle twice, and the list is whole afterwards.
    /// </summary>
    [Fact]
    public void Xsa228_concurrent_maps_never_share_a_handle()
    {
        uint gref = Grant(5, readOnly: true);
        var live = new System.Collections.Concurrent.ConcurrentDictionary<uint, int>();
        Parallel.For(0, 8, t =>
        {
            for (int i = 0; i < 300; i++)
            {
                ulong gfn = MapGfn + (ulong)(t * 16) + (ulong)(i % 16);
                GnttabMapGrantRef m = Map(gref, gfn, GrantMapFlags.HostMap | GrantMapFlags.ReadOnly);
                Assert.Equal(0, m.Status);
                Assert.True(live.TryAdd(m.Handle, t), $"handle {m.Handle} handed out twice");
                Assert.True(live.TryRemove(m.Handle, out _));
                Assert.Equal(0, Unmap(m.Handle, gfn));
            }
        });
        Assert.Equal(0, _back.Grant.MappingCount);
        var handles = new HashSet<uint>();
        for (int i = 0; i < 128; i++) // Xen refuses further pins once a counter reaches 128 (its top bit)
        {
            GnttabMapGrantRef m = Map(gref, MapGfn + (ulong)i, GrantMapFlags.HostMap | GrantMapFlags.ReadOnly);
            Assert.Equal(0, m.Status);
            Assert.True(handles.Add(m.Handle));
        }

        Assert.Equal((short)GrantStatus.GeneralError, Map(gref, MapGfn + 200, GrantMapFlags.HostMap | GrantMapFlags.ReadOnly).Status);
    }

    /// <summary>
    /// XSA-230 "grant_table: possibly premature clearing of GTF_writing / GTF_reading": the release after a copy cleared
    /// GTF_writing by looking at host-writable pins only, so a grant still in use told its granter it was free to reuse.
    /// Here every release (a copy's and an unmap's) clears GTF_writing only once no writable pin of any kind is left and
    /// GTF_reading only once no pin at all is, so a copy of a mapped grant leaves its flags as the mapping needs them.
    /// </summary>
    [Fact]
    public void Xsa230_a_copy_of_a_mapped_grant_leaves_its_flags_set()
    {
        const ushort reading = (ushort)GrantEntryFlags.Reading, both = (ushort)(GrantEntryFlags.Reading | GrantEntryFlags.Writing);
        uint rw = Grant(5), ro = Grant(6, readOnly: true);
        GnttabMapGrantRef writable = Map(rw, MapGfn);
        GnttabMapGrantRef readOnly = Map(ro, MapGfn + 1, GrantMapFlags.HostMap | GrantMapFlags.ReadOnly);
        Assert.Equal((0, 0), (writable.Status, readOnly.Status));
        Assert.Equal((both, reading), (InUse(rw), InUse(ro)));

        Assert.Equal(0, Copy(rw, into: false)); // a read claim joins the writable mapping's pin, then leaves
        Assert.Equal(0, Copy(rw, into: true));  // a write claim joins it, then leaves
        Assert.Equal(0, Copy(ro, into: false));
        Assert.Equal((both, reading), (InUse(rw), InUse(ro)));

        Assert.Equal(0, Unmap(writable.Handle, MapGfn));
        Assert.Equal(0, Unmap(readOnly.Handle, MapGfn + 1));
        Assert.Equal((0, 0), (InUse(rw), InUse(ro)));
        Assert.True(_share.EndForeignAccess(rw));
        Assert.True(_share.EndForeignAccess(ro));
    }

    private unsafe ushort InUse(uint gref) =>
        (ushort)(((GrantEntryV1*)_m.Memory.GetFramePointer(_front.Grant.GetSharedFrame(0)))[gref].Flags &
            (ushort)(GrantEntryFlags.Reading | GrantEntryFlags.Writing));

    // One GNTTABOP_copy of 16 bytes by the backend between grant gref and its own frame 3.
    private short Copy(uint gref, bool into)
    {
        var granted = new GnttabCopyPtr { Ref = gref, DomId = 1 };
        var own = new GnttabCopyPtr { Gmfn = 3, DomId = DomainId.Self };
        var op = new GnttabCopy
        {
            Source = into ? own : granted,
            Dest = into ? granted : own,
            Len = 16,
            Flags = (ushort)(into ? GrantCopyFlags.DestGref : GrantCopyFlags.SourceGref),
        };
        _m.Host.Copy(_back.Grant, ref op);
        return op.Status;
    }

    /// <summary>
    /// XSA-232 "Missing NULL pointer check in grant table code": GNTTABOP_cache_flush used the owner of a page without
    /// checking that the page had one. HVM callers cannot reach cache_flush here (-ENOSYS, as Xen's hvm_grant_table_op),
    /// and every frame a grant or copy touches must be owned by the domain that offers it: an ownerless frame is
    /// GNTST_bad_page.
    /// </summary>
    [Fact]
    public void Xsa232_frames_without_an_owner_are_refused()
    {
        // The granter's EPT points at a frame nobody owns (a hypervisor that freed it without unmapping).
        MachineFrameNumber orphan = _m.Memory.AllocateFrame(new FrameOwner(1));
        _front.Ept.Map(new GuestFrameNumber(40).Address, orphan, 1, EptAccess.ReadWriteExecute);
        _m.Memory.FreeFrame(orphan);
        uint gref = Grant(40);
        Assert.Equal((short)GrantStatus.BadPage, Map(gref).Status);
        Span<GnttabCopy> ops = [new() { Source = new() { Gmfn = 40, DomId = DomainId.Self }, Dest = new() { Gmfn = 3, DomId = DomainId.Self }, Len = 1 }];
        _m.Host.Copy(_front.Grant, ops);
        Assert.Equal((short)GrantStatus.BadPage, ops[0].Status);

        var dispatcher = new HypercallDispatcher<TestDomain>();
        new GrantTableHypercalls<TestDomain>(_m.Host, new SelfResolver()).Register(dispatcher);
        HypercallArguments args = default;
        args[0] = (ulong)GrantTableOp.CacheFlush;
        args[1] = 20UL << 12;
        args[2] = 1;
        HypercallCall<TestDomain> call = dispatcher.CreateCall(_back, (uint)HypercallNumber.GrantTableOp, HypercallAbi.Native64, _back.Virtual, args);
        Assert.Equal(XenErrno.ENOSYS.Negated(), dispatcher.Invoke(ref call));
    }

    private sealed class SelfResolver : IGrantTableCallerResolver<TestDomain>
    {
        public GrantDomain? GetDomain(TestDomain caller) => caller.Grant;

        public bool IsPrivileged(TestDomain caller) => false;
    }

    /// <summary>
    /// XSA-255 "grant table v2 -> v1 transition may crash Xen": switching back to v1 freed the status frames without
    /// looking for outstanding mappings of them, so a mapping kept writing into a page handed to someone else. Here the
    /// switch takes them out of the guest's EPT and frees them through the reference counts: a frame another party still
    /// holds a reference on (a control domain's foreign mapping of it) is freed only when that reference goes.
    /// </summary>
    [Fact]
    public void Xsa255_a_referenced_status_frame_outlives_the_switch_to_v1()
    {
        var v = new GnttabSetVersion { Version = 2 };
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));
        MachineFrameNumber status = _front.Grant.GetStatusFrame(0);
        Assert.Equal(0, _m.Host.AddToPhysmap(_front.Grant, GrantTableHost.GrantTableStatusIndex, new GuestFrameNumber(0x3000)));
        _m.Frames.Acquire(status); // a foreign mapping of the frame

        v.Version = 1;
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));
        Assert.False(_front.Ept.TryLookup(new GuestFrameNumber(0x3000), out _, out _));
        Assert.True(_m.Frames.IsFreePending(status));
        Assert.True(_m.Memory.TryGetOwner(status, out FrameOwner owner));
        Assert.Equal(FrameOwner.Hypervisor, owner);

        // Going back to v2 allocates new status frames: never the one still referenced.
        v.Version = 2;
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));
        Assert.NotEqual(status, _front.Grant.GetStatusFrame(0));

        _m.Frames.Release(status);
        Assert.False(_m.Frames.IsFreePending(status));
        Assert.False(_m.Memory.TryGetOwner(status, out _));
    }

    /// <summary>
    /// XSA-379 "grant table v2 status pages may remain accessible after de-allocation": switching from v2 to v1 freed the
    /// status frames while the guest still had them in its physical address space. Here the switch removes them from the
    /// EPT first, then frees them.
    /// </summary>
    [Fact]
    public void Xsa379_status_frames_leave_the_guest_before_they_are_freed()
    {
        var v = new GnttabSetVersion { Version = 2 };
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));
        MachineFrameNumber status = _front.Grant.GetStatusFrame(0);
        Assert.Equal(0, _m.Host.AddToPhysmap(_front.Grant, GrantTableHost.GrantTableStatusIndex, new GuestFrameNumber(0x3000)));
        Assert.True(_front.Ept.TryLookup(new GuestFrameNumber(0x3000), out MachineFrameNumber mapped, out _));
        Assert.Equal(status, mapped);

        v.Version = 1;
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));
        Assert.False(_front.Ept.TryLookup(new GuestFrameNumber(0x3000), out _, out _));
        Assert.False(_front.TryRead(0x3000UL << 12, new byte[1]));
        Assert.False(_m.Memory.TryGetOwner(status, out _));
        Assert.Equal(XenErrno.EINVAL.Negated(), _m.Host.AddToPhysmap(_front.Grant, GrantTableHost.GrantTableStatusIndex, new GuestFrameNumber(0x3000)));
    }

    /// <summary>
    /// XSA-380 "long running loops in grant table handling": operations whose work grew with guest-controlled sizes
    /// (releasing mappings, version changes over big tables) ran without preemption. Here work per step is bounded: tables
    /// and maptracks have per-domain limits, and batched hypercalls stop at the dispatcher's preemption check (every
    /// operation for map and copy, every 32 for unmap) and continue later.
    /// </summary>
    [Fact]
    public void Xsa380_batches_yield_to_preemption()
    {
        var dispatcher = new HypercallDispatcher<TestDomain> { PreemptCheck = _ => true };
        new GrantTableHypercalls<TestDomain>(_m.Host, new SelfResolver()).Register(dispatcher);
        (GrantTableOp Cmd, ulong Expected)[] cases = [(GrantTableOp.Copy, 1), (GrantTableOp.MapGrantRef, 1), (GrantTableOp.UnmapGrantRef, 32), (GrantTableOp.SwapGrantRef, 1)];
        foreach (var (cmd, expected) in cases)
        {
            HypercallArguments args = default;
            args[0] = (ulong)cmd;
            args[1] = 20UL << 12;
            args[2] = 1_000_000; // a guest asking for a huge batch (reads fail past its RAM: it must stop long before)
            HypercallCall<TestDomain> call = dispatcher.CreateCall(_back, (uint)HypercallNumber.GrantTableOp, HypercallAbi.Native64, _back.Virtual, args);
            long rc = dispatcher.Invoke(ref call);
            Assert.Equal((long)HypercallNumber.GrantTableOp, rc);
            Assert.Equal(1_000_000 - expected, call.Arguments[2]);
        }

        Assert.Equal(64, _front.Grant.Limits.MaxGrantFrames);
        Assert.Equal(1024 * GrantTableLimits.MaptrackPerFrame, _front.Grant.Limits.MaxMaptrackFrames * GrantTableLimits.MaptrackPerFrame);
    }

    /// <summary>
    /// XSA-381: no grant-table advisory was published under this number (XSA-384's text lists 378, 379, 380, 382 and 383
    /// as the advisories released with it). Its neighbours' class is covered here: a guest-supplied count must be bounded
    /// by what exists before anything is written. setup_table for more frames than the limit, or than the caller's
    /// buffer holds, fails with nothing written.
    /// </summary>
    [Fact]
    public void Xsa381_setup_table_counts_are_bounded_before_writing()
    {
        Span<ulong> buffer = stackalloc ulong[4];
        buffer.Fill(0x1234);
        Assert.Equal(GrantStatus.GeneralError, _m.Host.SetupTable(_front.Grant, false, DomainId.Self, 65, buffer));
        Assert.Equal(GrantStatus.GeneralError, _m.Host.SetupTable(_front.Grant, false, DomainId.Self, 5, buffer));
        Assert.All(buffer.ToArray(), x => Assert.Equal(0x1234UL, x));
        Assert.Equal(1, _front.Grant.SharedFrameCount);
    }

    /// <summary>
    /// XSA-382 "inadequate grant-v2 status frames array bounds check": get_status_frames compared the requested count
    /// with 8 times the room in the (compat) buffer and wrote past it. Here the count must not exceed the status frames
    /// the table has nor the room in the destination.
    /// </summary>
    [Fact]
    public void Xsa382_get_status_frames_is_bounded_by_table_and_buffer()
    {
        var v = new GnttabSetVersion { Version = 2 };
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));
        Span<ulong> frames = new ulong[8];
        Assert.Equal(GrantStatus.Okay, _m.Host.GetStatusFrames(_front.Grant, false, DomainId.Self, 1, frames));
        Assert.Equal(GrantStatus.GeneralError, _m.Host.GetStatusFrames(_front.Grant, false, DomainId.Self, 2, frames));
        Assert.Equal(0, _m.Host.AddToPhysmap(_front.Grant, 40, new GuestFrameNumber(0x3000))); // 41 frames: 6 status frames
        Assert.Equal(6, _front.Grant.StatusFrameCount);
        Assert.Equal(GrantStatus.GeneralError, _m.Host.GetStatusFrames(_front.Grant, false, DomainId.Self, 6, frames[..5]));
        Assert.Equal(GrantStatus.Okay, _m.Host.GetStatusFrames(_front.Grant, false, DomainId.Self, 6, frames));
        Assert.Equal(GrantStatus.PermissionDenied, _m.Host.GetStatusFrames(_back.Grant, false, 1, 1, frames));
    }

    /// <summary>
    /// XSA-383 "xen/arm: No memory limit for dom0less domUs": domains built without a limit could take all memory. The
    /// class here: every grant-table resource a guest can make the hypervisor allocate is limited per domain (table frames
    /// by max_grant_frames, maptrack by max_maptrack_frames), so a guest cannot grow them without bound.
    /// </summary>
    [Fact]
    public void Xsa383_guest_driven_allocations_are_limited()
    {
        TestDomain small = _m.AddDomain(3, new GrantTableLimits(2, 1));
        ulong before = _m.Memory.FramesOwnedBy(FrameOwner.Hypervisor);
        Assert.Equal(0, _m.Host.AddToPhysmap(small.Grant, 1, new GuestFrameNumber(0x3001)));
        for (ulong idx = 2; idx < 200; idx++)
        {
            Assert.Equal(XenErrno.EINVAL.Negated(), _m.Host.AddToPhysmap(small.Grant, idx, new GuestFrameNumber(0x3000 + idx)));
        }

        Assert.Equal(GrantStatus.GeneralError, _m.Host.SetupTable(small.Grant, false, DomainId.Self, 3, new ulong[3]));
        Assert.Equal(2, small.Grant.SharedFrameCount);
        Assert.Equal(before + 1, _m.Memory.FramesOwnedBy(FrameOwner.Hypervisor));
    }

    /// <summary>
    /// XSA-384 "Another race in XENMAPSPACE_grant_table handling": mapping a v2 status frame into the guest raced with a
    /// switch back to v1 on another vCPU, which freed the frame while it was being added to the guest's P2M. Here the
    /// lookup, the EPT update and the recording of the frame's guest address are one step under the lock the version
    /// switch takes, so the guest can only ever hold a live status frame. XSA-486 "grant table v2 race in status page
    /// mapping" (2026) is the same race in a window the fixes for 379 and 384 left open; this test covers it too.
    /// </summary>
    [Fact]
    public void Xsa384_status_frame_mapping_cannot_race_with_its_free()
    {
        var stop = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        var toggler = new Thread(() =>
        {
            var v = new GnttabSetVersion();
            while (!stop.IsCancellationRequested)
            {
                v.Version = v.Version == 2 ? 1u : 2u;
                _m.Host.SetVersion(_front.Grant, ref v);
            }
        });
        toggler.Start();
        int mapped = 0;
        while (!stop.IsCancellationRequested)
        {
            if (_m.Host.AddToPhysmap(_front.Grant, GrantTableHost.GrantTableStatusIndex, new GuestFrameNumber(0x3000 + (ulong)(mapped % 4))) == 0)
            {
                mapped++;
            }

            for (ulong g = 0x3000; g < 0x3004; g++)
            {
                if (_front.Ept.TryLookup(new GuestFrameNumber(g), out MachineFrameNumber f, out _))
                {
                    // Racing with the toggler: the frame may vanish between these reads, but never be mapped while free.
                    bool owned = _m.Memory.TryGetOwner(f, out FrameOwner owner);
                    bool stillMapped = _front.Ept.TryLookup(new GuestFrameNumber(g), out MachineFrameNumber again, out _) && again == f;
                    Assert.True(!stillMapped || (owned && owner == FrameOwner.Hypervisor), $"gfn {g:x} maps a freed frame");
                }
            }
        }

        toggler.Join();
        Assert.True(mapped > 0);
    }
}
