using System.Runtime.InteropServices;
using VmmKit.Dom0.Xen.Abi;
using VmmKit.Ept;
using VmmKit.GrantTable;
using VmmKit.Hypercall;
using VmmKit.ReferenceHypervisor.Hypercalls;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// How the reference hypervisor composes VmmKit.GrantTable with its own physmap code, against a hostile guest whose
/// vCPUs make hypercalls on their own host threads at once. Xen changes a domain's p2m under its p2m lock, whether the
/// change comes from XENMEM_add_to_physmap / remove_from_physmap (xen/common/memory.c) or from a grant map or unmap
/// (create_grant_p2m_mapping, replace_grant_p2m_mapping in xen/arch/x86/mm.c, through p2m_add_page / p2m_remove_page):
/// a physmap call that looked at a slot changes that very slot. A frame is never freed while a guest still maps it.
/// </summary>
public sealed class GrantIntegrationReviewTests : IDisposable
{
    private const ushort GuestId = 1;
    private readonly Machine _machine = new(64 << 20, ProcessorProviders.CreateDefault(), MachineMemoryBacking.Anonymous, inProcessBackend: false);
    private readonly Domain _guest;

    public GrantIntegrationReviewTests()
    {
        var dom0 = new Domain(_machine, 0, "d0", 1, privileged: true, upcall: null);
        _machine.AddDomain(dom0);
        _guest = new Domain(_machine, GuestId, "d1", 2, privileged: false, upcall: null);
        _machine.AddDomain(_guest);
        _guest.SetMaxPages(16);
        for (ulong gfn = 0; gfn < 4; gfn++)
            Assert.Equal(0, _guest.Populate(gfn));
        Assert.Equal(0, _guest.InitialiseBootVcpu(0x1000, 0));
        Assert.Equal(2, _guest.Vcpus.Count);
        Assert.True(_guest.Physical.TryWrite(new GuestPhysicalAddress(3 * 4096), 0xC0FFEEu));
    }

    public void Dispose() => _machine.Dispose();

    private long Call(int vcpu, GuestPage page, HypercallNumber op, ulong a0, ulong a1 = 0, ulong a2 = 0)
    {
        var regs = new HypercallRegisters { Rax = (ulong)op, Rdi = a0, Rsi = a1, Rdx = a2 };
        _machine.Hypercalls.Dispatch(_guest.Vcpus[vcpu], ref regs, GuestX86Mode.Long64, 0, page);
        return (long)regs.Rax;
    }

    /// <summary>The guest grants itself (domid 1) its own gfn <paramref name="gfn"/> in v1 entry <paramref name="gref"/>.</summary>
    private void GrantToSelf(uint gref, uint gfn) =>
        MemoryMarshal.Write(_machine.Memory.GetFrame(_guest.Grants.GetSharedFrame(0))[(int)(gref * GrantEntryV1.Size)..],
            new GrantEntryV1 { Flags = (ushort)GrantEntryFlags.PermitAccess, DomId = GuestId, Frame = gfn });

    /// <summary>GNTTABOP_map_grant_ref of the guest's own grant <paramref name="gref"/> at <paramref name="gfn"/>: the op's status and handle.</summary>
    private (short Status, uint Handle) Map(int vcpu, uint gref, ulong gfn)
    {
        var page = new GuestPage();
        MemoryMarshal.Write(page.Bytes, new GnttabMapGrantRef { HostAddr = gfn * 4096, Flags = (uint)GrantMapFlags.HostMap, Ref = gref, Dom = GuestId });
        Assert.Equal(0, Call(vcpu, page, HypercallNumber.GrantTableOp, (ulong)GrantTableOp.MapGrantRef, 0, 1));
        var op = MemoryMarshal.Read<GnttabMapGrantRef>(page.Bytes);
        return (op.Status, op.Handle);
    }

    private short Unmap(int vcpu, uint handle, ulong gfn)
    {
        var page = new GuestPage();
        MemoryMarshal.Write(page.Bytes, new GnttabUnmapGrantRef { HostAddr = gfn * 4096, Handle = handle });
        Assert.Equal(0, Call(vcpu, page, HypercallNumber.GrantTableOp, (ulong)GrantTableOp.UnmapGrantRef, 0, 1));
        return MemoryMarshal.Read<GnttabUnmapGrantRef>(page.Bytes).Status;
    }

    private long SetVersion(int vcpu, uint version)
    {
        var page = new GuestPage();
        MemoryMarshal.Write(page.Bytes, new GnttabSetVersion { Version = version });
        return Call(vcpu, page, HypercallNumber.GrantTableOp, (ulong)GrantTableOp.SetVersion, 0, 1);
    }

    private long AddToPhysmap(int vcpu, XenMapSpace space, ulong idx, ulong gpfn)
    {
        var page = new GuestPage();
        MemoryMarshal.Write(page.Bytes, new XenAddToPhysmap { Domid = DomainId.Self, Space = (uint)space, Idx = idx, Gpfn = gpfn });
        return Call(vcpu, page, HypercallNumber.MemoryOp, (ulong)MemoryOp.AddToPhysmap);
    }

    private long RemoveFromPhysmap(int vcpu, ulong gpfn)
    {
        var page = new GuestPage();
        MemoryMarshal.Write(page.Bytes, new XenRemoveFromPhysmap { Domid = DomainId.Self, Gpfn = gpfn });
        return Call(vcpu, page, HypercallNumber.MemoryOp, XenRemoveFromPhysmap.SubOp);
    }

    private MachineFrameNumber FrameAt(ulong gfn)
    {
        Assert.True(_guest.Ept.TryLookup(new GuestFrameNumber(gfn), out var frame, out _));
        return frame;
    }

    /// <summary>The guest's RAM page at gfn 3: still allocated to it, not waiting to be freed, with its contents.</summary>
    private bool StillTheGuestsPage(MachineFrameNumber frame) =>
        _machine.Memory.TryGetOwner(frame, out FrameOwner owner) && owner.DomainId == GuestId
        && !_machine.Frames.IsFreePending(frame) && MemoryMarshal.Read<uint>(_machine.Memory.GetFrame(frame)) == 0xC0FFEEu;

    /// <summary>
    /// Runs <paramref name="other"/> (vCPU 1's hypercall) on its own thread the first time a physmap call of vCPU 0 has
    /// looked at slot <paramref name="gfn"/>, and lets vCPU 0 go on once that thread finished or waits (for the physmap
    /// lock vCPU 0 holds). The returned action waits for that thread (false when it never started) and rethrows what
    /// it threw.
    /// </summary>
    private Func<bool> RaceAtSlot(ulong gfn, Action other)
    {
        Thread? thread = null;
        Exception? error = null;
        _machine.PhysmapSlotLooked = (d, slot) =>
        {
            if (d != _guest || slot != gfn || thread is not null)
                return;
            thread = new Thread(() =>
            {
                try
                {
                    other();
                }
                catch (Exception e)
                {
                    error = e;
                }
            });
            thread.Start();
            while (thread.IsAlive && (thread.ThreadState & ThreadState.WaitSleepJoin) == 0)
                Thread.Yield();
        };
        return () =>
        {
            _machine.PhysmapSlotLooked = null;
            if (thread is null)
                return false;
            thread.Join();
            if (error is not null)
                throw new InvalidOperationException("vCPU 1's hypercall failed", error);
            return true;
        };
    }

    [Fact]
    public void A_grant_unmapped_while_add_to_physmap_looks_at_its_slot_never_frees_the_ram_page_the_grant_named()
    {
        // The guest maps its own gfn 3 (frame X) by grant at gfn 10. vCPU 0 places grant-table frame 0 at gfn 10 (a grant
        // mapping there: -ENXIO, xenmem_add_to_physmap_one's guest_remove_page) while vCPU 1 unmaps that grant. Whatever
        // the order, X is still the guest's RAM at gfn 3 afterwards, never freed under it.
        MachineFrameNumber x = FrameAt(3);
        GrantToSelf(8, 3);
        var (status, handle) = Map(0, 8, 10);
        Assert.Equal((short)GrantStatus.Okay, status);
        Assert.Equal((short)GrantStatus.Okay, Unmap(0, handle, 10));   // the unmap path once, before the race
        (status, handle) = Map(0, 8, 10);
        Assert.Equal((short)GrantStatus.Okay, status);

        short unmapped = -1;
        var ran = RaceAtSlot(10, () => unmapped = Unmap(1, handle, 10));
        long rc = AddToPhysmap(0, XenMapSpace.GrantTable, 0, 10);
        Assert.True(ran());

        Assert.Equal((short)GrantStatus.Okay, unmapped);
        Assert.True(StillTheGuestsPage(x));
        Assert.Equal(x, FrameAt(3));
        Assert.Equal(XenErrno.ENXIO.Negated(), rc);   // the slot held the grant mapping when the call looked at it
    }

    [Fact]
    public void A_grant_mapped_while_remove_from_physmap_looks_at_its_slot_never_frees_the_ram_page_the_grant_named()
    {
        // vCPU 0 removes its RAM page at gfn 10 while vCPU 1 maps, at gfn 10, the grant of its own gfn 3 (frame X). The
        // removal takes the page it looked at, and X, still the guest's RAM at gfn 3, outlives the grant's unmap.
        Assert.Equal(0, _guest.Populate(10));
        MachineFrameNumber x = FrameAt(3);
        GrantToSelf(8, 3);
        var (status, handle) = Map(0, 8, 11);                            // the map path once, before the race
        Assert.Equal((short)GrantStatus.Okay, status);
        Assert.Equal((short)GrantStatus.Okay, Unmap(0, handle, 11));

        (short Status, uint Handle) mapped = (-1, 0);
        var ran = RaceAtSlot(10, () => mapped = Map(1, 8, 10));
        Assert.Equal(0, RemoveFromPhysmap(0, 10));
        Assert.True(ran());

        Assert.Equal((short)GrantStatus.Okay, mapped.Status);
        bool grantStillMapped = _guest.Ept.TryLookup(new GuestFrameNumber(10), out var at10, out _) && at10 == x;
        Assert.Equal((short)GrantStatus.Okay, Unmap(0, mapped.Handle, 10));
        Assert.True(StillTheGuestsPage(x));
        Assert.Equal(x, FrameAt(3));
        Assert.True(grantStillMapped);   // the removal took the RAM page it looked at, not the grant mapped after
    }

    [Fact]
    public void Set_version_1_during_add_to_physmap_of_a_status_frame_gives_an_outcome_of_one_order_or_the_other()
    {
        // Xen's gnttab_map_frame holds a reference on the status frame until xenmem_add_to_physmap_one is done, so a
        // concurrent GNTTABOP_set_version to 1 cannot free it midway (gnttab_unpopulate_status_frames): the call either
        // comes first (-EINVAL, the slot's page untouched) or places the frame, which set_version then removes.
        Assert.Equal(0, SetVersion(0, 2));
        MachineFrameNumber ram = FrameAt(2);
        long version = -1;
        var ran = RaceAtSlot(2, () => version = SetVersion(1, 1));
        long rc = AddToPhysmap(0, XenMapSpace.GrantTable, GrantTableHost.GrantTableStatusIndex, 2);
        Assert.True(ran());

        Assert.Equal(0, version);
        Assert.Equal(1, _guest.Grants.Version);
        bool placedFirst = rc == 0 && !_guest.Ept.TryLookup(new GuestFrameNumber(2), out _, out _);
        bool refusedFirst = rc == XenErrno.EINVAL.Negated() && _guest.Ept.TryLookup(new GuestFrameNumber(2), out var still, out _) && still == ram;
        Assert.True(placedFirst || refusedFirst, $"add_to_physmap returned {rc}");
    }

    [Fact]
    public void A_grant_call_writing_a_page_another_vcpu_removes_writes_it_before_the_page_is_freed()
    {
        // Xen's copy_to_guest holds a reference on the page it writes (hvm_copy_to_guest_linear: get_page_from_gfn ...
        // put_page), so a remove_from_physmap by another vCPU cannot free it in between. Here GNTTABOP_setup_table
        // translates its frame_list (the guest's gfn 3, frame X) to a host pointer; vCPU 1 then removes gfn 3. The
        // store must not land in X after X was freed (and zeroed): it lands before, or not at all.
        MachineFrameNumber x = FrameAt(3);
        Assert.True(_guest.Physical.TryWrite(new GuestPhysicalAddress(2 * 4096), new GnttabSetupTable { Dom = DomainId.Self, NrFrames = 1, FrameList = 3 * 4096 }));

        var (rc, removed) = GrantCallRacingRemovalOfGfn3(GrantTableOp.SetupTable, 2 * 4096, writesOnly: true);

        Assert.Equal(0, rc);
        Assert.Equal(0, removed);
        Assert.False(_machine.Memory.TryGetOwner(x, out _));
        Assert.True(_machine.Memory.GetFrame(x).IndexOfAnyExcept((byte)0) < 0, "the hypercall wrote into the freed frame");
    }

    [Fact]
    public void A_copy_call_whose_operations_another_vcpu_removes_reads_and_writes_them_before_the_page_is_freed()
    {
        // The same for GNTTABOP_copy, whose first operation is read before the package holds any copy word (which every
        // free waits for): the operation array lies in gfn 3 (frame X), which vCPU 1 removes as soon as the call first
        // translates an address in it. The operation is read, and its status written, before X is freed.
        MachineFrameNumber x = FrameAt(3);
        Assert.True(_guest.Physical.TryWrite(new GuestPhysicalAddress(0), 0x1122334455667788UL));
        Assert.True(_guest.Physical.TryWrite(new GuestPhysicalAddress(3 * 4096), new GnttabCopy
        {
            Source = new() { Gmfn = 0, DomId = DomainId.Self },
            Dest = new() { Gmfn = 1, DomId = DomainId.Self },
            Len = 8,
        }));

        var (rc, removed) = GrantCallRacingRemovalOfGfn3(GrantTableOp.Copy, 3 * 4096, writesOnly: false);

        Assert.Equal(0, rc);
        Assert.Equal(0, removed);
        Assert.True(_guest.Physical.TryRead(new GuestPhysicalAddress(4096), out ulong copied));
        Assert.Equal(0x1122334455667788UL, copied);   // the operation was read before its page was freed
        Assert.False(_machine.Memory.TryGetOwner(x, out _));
        Assert.True(_machine.Memory.GetFrame(x).IndexOfAnyExcept((byte)0) < 0, "the hypercall wrote into the freed frame");
    }

    /// <summary>
    /// vCPU 0's grant_table_op <paramref name="cmd"/> (one operation at <paramref name="uop"/>) through a guest memory view
    /// that, the first time the call translates an address in gfn 3 (a write only, when <paramref name="writesOnly"/>),
    /// starts vCPU 1's remove_from_physmap of gfn 3 on its own thread and lets the call go on once that thread finished
    /// or waits. Returns both results, the removal's once its thread ended.
    /// </summary>
    private (long Rc, long Removed) GrantCallRacingRemovalOfGfn3(GrantTableOp cmd, ulong uop, bool writesOnly)
    {
        Thread? remover = null;
        long removed = 1;
        var memory = new RacingGuestMemory(_guest.Physical, victimGfn: 3, () =>
        {
            remover = new Thread(() => removed = RemoveFromPhysmap(1, 3));
            remover.Start();
            while (remover.IsAlive && (remover.ThreadState & ThreadState.WaitSleepJoin) == 0)
                Thread.Yield();
        }, writesOnly);
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.GrantTableOp, Rdi = (ulong)cmd, Rsi = uop, Rdx = 1 };
        _machine.Hypercalls.Dispatch(_guest.Vcpus[0], ref regs, GuestX86Mode.Long64, 0, memory);
        Assert.NotNull(remover);
        remover.Join();
        return ((long)regs.Rax, removed);
    }

    /// <summary>
    /// The guest's memory by guest-physical address (paging off), calling <c>onVictimAccess</c> once, on the hypercall's
    /// thread, between the translation of a write into <c>victimGfn</c> (or of any access, unless <c>writesOnly</c>)
    /// and the access itself.
    /// </summary>
    private sealed unsafe class RacingGuestMemory(GuestPhysicalMemory physical, ulong victimGfn, Action onVictimAccess, bool writesOnly) : IGuestVirtualMemory
    {
        private bool _fired;

        public bool TryRead(ulong gva, Span<byte> destination) => physical.TryRead(new GuestPhysicalAddress(gva), destination, out _);

        public bool TryWrite(ulong gva, ReadOnlySpan<byte> source)
        {
            byte* host = TranslateToHost(gva, source.Length, write: true);
            if (host == null)
                return false;
            source.CopyTo(new Span<byte>(host, source.Length));
            return true;
        }

        public byte* TranslateToHost(ulong gva, int length, bool write)
        {
            byte* host = physical.TranslateToHost(new GuestPhysicalAddress(gva), length, write ? EptAccess.Write : EptAccess.Read);
            if (host != null && (write || !writesOnly) && gva >> 12 == victimGfn && !_fired)
            {
                _fired = true;
                onVictimAccess();
            }

            return host;
        }
    }
}
