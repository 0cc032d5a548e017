using System.Runtime.InteropServices;
using VmmKit.Dom0.Xen.Abi;
using VmmKit.Ept;
using VmmKit.GrantTable;
using VmmKit.Hypercall;
using VmmKit.ReferenceHypervisor.Host;
using VmmKit.ReferenceHypervisor.Hypercalls;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// The lifetime of guest frames in src/: every path that unmaps, frees or remaps one, checked against Xen 4.17's rules
/// (xen/common/memory.c, xen/common/grant_table.c, xen/arch/x86/mm/p2m.c, xen/common/domain.c,
/// xen/common/page_alloc.c). A frame others map, by grant (VmmKit.GrantTable's FrameReferences) or by Dom0's foreign
/// mappings (src/Host/ForeignMappings.cs), lives until the last mapping goes, whichever kind goes last, when its domain
/// removes it or is destroyed (Xen: every mapping holds a page reference; the page is freed at the last
/// <c>put_page</c>); a destroyed domain with such frames stays a zombie, its id taken, until its last page is gone
/// (<c>free_domheap_pages</c> drops the domain's reference when <c>tot_pages</c> reaches 0). Each test asserts what Xen
/// does; a hostile guest drives every step through its own hypercalls unless the comment says otherwise.
/// </summary>
public sealed class FrameLifetimeTests : IDisposable
{
    private const ushort GuestId = 2;
    private const ushort VictimId = 3;
    private readonly Machine _machine = new(64 << 20, ProcessorProviders.CreateDefault(), MachineMemoryBacking.Anonymous, inProcessBackend: false);
    private readonly GuestPage _page = new();
    private readonly Domain _dom0;
    private readonly Domain _guest;
    private readonly ForeignMappings _foreign;

    public FrameLifetimeTests()
    {
        _dom0 = Create(0, privileged: true, vcpus: 1);
        _guest = Create(GuestId, privileged: false, vcpus: 2);
        Assert.True(_guest.Physical.TryWrite(new GuestPhysicalAddress(3 * 4096), 0xC0FFEEu));
        _foreign = new ForeignMappings(_machine.Frames);   // Dom0's MMAPBATCH references, as the Dom0 channel keeps them
        _machine.Foreign = _foreign;
    }

    public void Dispose() => _machine.Dispose();

    private Domain Create(ushort id, bool privileged, uint vcpus)
    {
        var d = new Domain(_machine, id, $"d{id}", vcpus, privileged, upcall: null);
        _machine.AddDomain(d);
        d.SetMaxPages(16);
        for (ulong gfn = 0; gfn < 4; gfn++)
            Assert.Equal(0, d.Populate(gfn));
        Assert.Equal(0, d.InitialiseBootVcpu(0x1000, 0));
        return d;
    }

    private long Call(Domain caller, HypercallNumber op, ulong a0, ulong a1 = 0, ulong a2 = 0, int vcpu = 0)
    {
        var regs = new HypercallRegisters { Rax = (ulong)op, Rdi = a0, Rsi = a1, Rdx = a2 };
        _machine.Hypercalls.Dispatch(caller.Vcpus[vcpu], ref regs, GuestX86Mode.Long64, 0, _page);
        return (long)regs.Rax;
    }

    private MachineFrameNumber FrameAt(Domain d, ulong gfn)
    {
        Assert.True(d.Ept.TryLookup(new GuestFrameNumber(gfn), out var frame, out _));
        return frame;
    }

    private bool OwnedBy(MachineFrameNumber frame, ushort id) =>
        _machine.Memory.TryGetOwner(frame, out FrameOwner owner) && owner.DomainId == id;

    /// <summary>The guest writes v1 grant entry <paramref name="gref"/> of its own table: <paramref name="to"/> may map its gfn.</summary>
    private void Grant(uint gref, ushort to, uint gfn) =>
        MemoryMarshal.Write(_machine.Memory.GetFrame(_guest.Grants.GetSharedFrame(0))[(int)(gref * GrantEntryV1.Size)..],
            new GrantEntryV1 { Flags = (ushort)GrantEntryFlags.PermitAccess, DomId = to, Frame = gfn });

    /// <summary>GNTTABOP_map_grant_ref made by <paramref name="caller"/>'s vCPU 0 (one op); returns the handle.</summary>
    private uint MapGrant(Domain caller, ushort granter, uint gref, ulong gfn)
    {
        MemoryMarshal.Write(_page.Bytes, new GnttabMapGrantRef { HostAddr = gfn * 4096, Flags = (uint)GrantMapFlags.HostMap, Ref = gref, Dom = granter });
        Assert.Equal(0, Call(caller, HypercallNumber.GrantTableOp, (ulong)GrantTableOp.MapGrantRef, 0, 1));
        var op = MemoryMarshal.Read<GnttabMapGrantRef>(_page.Bytes);
        Assert.Equal(0, op.Status);
        return op.Handle;
    }

    private void UnmapGrant(Domain caller, uint handle, ulong gfn)
    {
        MemoryMarshal.Write(_page.Bytes, new GnttabUnmapGrantRef { HostAddr = gfn * 4096, Handle = handle });
        Assert.Equal(0, Call(caller, HypercallNumber.GrantTableOp, (ulong)GrantTableOp.UnmapGrantRef, 0, 1));
        Assert.Equal(0, MemoryMarshal.Read<GnttabUnmapGrantRef>(_page.Bytes).Status);
    }

    private long AddToPhysmap(Domain caller, XenMapSpace space, ulong idx, ulong gpfn)
    {
        MemoryMarshal.Write(_page.Bytes, new XenAddToPhysmap { Domid = DomainId.Self, Space = (uint)space, Idx = idx, Gpfn = gpfn });
        return Call(caller, HypercallNumber.MemoryOp, (ulong)MemoryOp.AddToPhysmap);
    }

    private long RemoveFromPhysmap(Domain caller, ushort domid, ulong gpfn)
    {
        MemoryMarshal.Write(_page.Bytes, new XenRemoveFromPhysmap { Domid = domid, Gpfn = gpfn });
        return Call(caller, HypercallNumber.MemoryOp, XenRemoveFromPhysmap.SubOp);
    }

    /// <summary>Dom0's XEN_DOMCTL_destroydomain of the guest.</summary>
    private long DestroyGuest()
    {
        MemoryMarshal.Write(_page.Bytes, new XenDomctl { Cmd = ToolsAbi.DomctlDestroyDomain, InterfaceVersion = ToolsAbi.DomctlInterfaceVersion, Domain = GuestId });
        return Call(_dom0, HypercallNumber.Domctl, 0);
    }

    /// <summary>Dom0's XENMEM_populate_physmap of one 4 KiB extent at <paramref name="gfn"/> of <paramref name="domid"/>: the extents done.</summary>
    private long PopulateByToolstack(ushort domid, ulong gfn)
    {
        MemoryMarshal.Write(_page.Bytes.AsSpan(512), gfn);
        MemoryMarshal.Write(_page.Bytes, new XenMemoryReservation { ExtentStart = 512, NrExtents = 1, ExtentOrder = 0, Domid = domid });
        return Call(_dom0, HypercallNumber.MemoryOp, ToolsAbi.MemPopulatePhysmap);
    }

    /// <summary>getdomaininfo's tot_pages, asked by Dom0.</summary>
    private ulong TotPages(ushort domid) => Assert.NotNull(DomainInfo(domid)).TotPages;

    /// <summary>getdomaininfo as Dom0 asks it: the first domain from <paramref name="domid"/> up, or null for -ESRCH.</summary>
    private XenDomctlGetDomainInfo? DomainInfo(ushort domid)
    {
        MemoryMarshal.Write(_page.Bytes, new XenDomctl { Cmd = ToolsAbi.DomctlGetDomainInfo, InterfaceVersion = ToolsAbi.DomctlInterfaceVersion, Domain = domid });
        long rc = Call(_dom0, HypercallNumber.Domctl, 0);
        if (rc == XenErrno.ESRCH.Negated())
            return null;
        Assert.Equal(0, rc);
        return MemoryMarshal.Read<XenDomctl>(_page.Bytes).GetDomainInfo;
    }

    /// <summary>The domids XEN_SYSCTL_getdomaininfolist reports, from domid 0 up (at most 8).</summary>
    private ushort[] ListedDomains()
    {
        const int buffer = 1024, infoSize = 112;   // sizeof(xen_domctl_getdomaininfo_t)
        MemoryMarshal.Write(_page.Bytes, new XenSysctl { Cmd = ToolsAbi.SysctlGetDomainInfoList, InterfaceVersion = ToolsAbi.SysctlInterfaceVersion, FirstDomain = 0, MaxDomains = 8, Buffer = buffer });
        Assert.Equal(0, Call(_dom0, HypercallNumber.Sysctl, 0));
        uint n = MemoryMarshal.Read<XenSysctl>(_page.Bytes).NumDomains;
        return [.. Enumerable.Range(0, (int)n).Select(i => MemoryMarshal.Read<XenDomctlGetDomainInfo>(_page.Bytes.AsSpan(buffer + (i * infoSize))).Domain)];
    }

    /// <summary>
    /// Another, innocent domain is created and populates pages until the machine hands it <paramref name="frame"/> (as its
    /// shared_info, an EPT table or a RAM page); false when it never does (the frame stayed allocated, as it must while
    /// something holds it).
    /// </summary>
    private bool VictimGets(MachineFrameNumber frame, out Domain victim)
    {
        victim = new Domain(_machine, VictimId, "victim", 1, privileged: false, upcall: null);
        _machine.AddDomain(victim);
        victim.SetMaxPages(1 << 15);
        for (ulong gfn = 0; !OwnedBy(frame, VictimId); gfn++)
        {
            if (gfn >= 1 << 15 || victim.Populate(gfn) != 0)
                return false;
        }

        return true;
    }

    // ---- A frame another domain maps, when its domain removes it or dies -----------------------------------------

    /// <summary>The page at the guest's gfn 3 is still the guest's, with its contents.</summary>
    private bool StillTheGuests(MachineFrameNumber frame) =>
        OwnedBy(frame, GuestId) && MemoryMarshal.Read<uint>(_machine.Memory.GetFrame(frame)) == 0xC0FFEEu;

    [Fact]
    public void A_destroyed_domains_frame_granted_to_dom0_stays_until_dom0_unmaps_it_and_the_id_stays_taken()
    {
        MachineFrameNumber frame = FrameAt(_guest, 3);
        Grant(8, 0, 3);
        uint handle = MapGrant(_dom0, GuestId, 8, 10);
        Assert.Equal(0, DestroyGuest());

        Assert.True(StillTheGuests(frame));
        Assert.True(_machine.Frames.IsFreePending(frame));
        Assert.True(_dom0.Physical.TryRead(new GuestPhysicalAddress(10 * 4096), out uint seen));
        Assert.Equal(0xC0FFEEu, seen);

        // A zombie: its id stays taken, so no new domain is charged for its frame.
        Assert.True(_machine.IsDomainIdTaken(GuestId));
        Assert.NotEqual((ushort)GuestId, _machine.AllocateDomainId());
        Domain next = Create(VictimId, privileged: false, vcpus: 1);
        for (ulong gfn = 0; gfn < 4; gfn++)
            Assert.NotEqual(frame, FrameAt(next, gfn));

        UnmapGrant(_dom0, handle, 10);
        Assert.False(_machine.Memory.TryGetOwner(frame, out _));              // freed with the last reference
        Assert.Equal(0ul, _machine.Memory.FramesOwnedBy(new FrameOwner(GuestId)));
        Assert.False(_machine.IsDomainIdTaken(GuestId));
    }

    [Fact]
    public void A_zombie_is_listed_as_dying_with_the_pages_it_has_left_until_its_last_frame_goes()
    {
        Grant(8, 0, 3);
        uint handle = MapGrant(_dom0, GuestId, 8, 10);
        Assert.Equal(0, DestroyGuest());

        // Xen keeps a dead domain in its list until its last page is freed: getdomaininfo and getdomaininfolist report
        // it, XEN_DOMINF_dying, with tot_pages the frames it has left; destroying it again is domain_kill's no-op.
        XenDomctlGetDomainInfo info = Assert.NotNull(DomainInfo(GuestId));
        Assert.Equal(GuestId, info.Domain);
        Assert.Equal((uint)DomainInfoFlags.Dying, info.Flags & (uint)(DomainInfoFlags.Dying | DomainInfoFlags.Running));
        Assert.Equal(_machine.Memory.FramesOwnedBy(new FrameOwner(GuestId)), info.TotPages);
        Assert.Equal(1ul, info.TotPages);                                     // the page Dom0 still maps
        Assert.Equal([0, GuestId], ListedDomains());
        Assert.Equal(0, DestroyGuest());

        UnmapGrant(_dom0, handle, 10);
        Assert.Null(DomainInfo(GuestId));                                      // gone with its last page
        Assert.Equal([0], ListedDomains());
        Assert.Equal(XenErrno.ESRCH.Negated(), DestroyGuest());
    }

    [Fact]
    public void A_destroyed_domains_frame_mapped_both_ways_goes_only_with_the_grant_mapping_when_that_goes_last()
    {
        MachineFrameNumber frame = FrameAt(_guest, 3);
        Grant(8, 0, 3);
        uint handle = MapGrant(_dom0, GuestId, 8, 10);
        Assert.True(_foreign.TryTake(frame, _guest.Owner));                   // Dom0's MMAPBATCH of the same page
        Assert.Equal(0, DestroyGuest());

        Assert.True(_foreign.Release(frame));                                 // privcmd's munmap first
        Assert.True(StillTheGuests(frame));                                   // the grant mapping still holds it

        UnmapGrant(_dom0, handle, 10);
        Assert.False(_machine.Memory.TryGetOwner(frame, out _));
    }

    [Fact]
    public void A_removed_page_mapped_both_ways_goes_only_with_the_foreign_mapping_when_that_goes_last()
    {
        MachineFrameNumber frame = FrameAt(_guest, 3);
        Grant(8, 0, 3);
        uint handle = MapGrant(_dom0, GuestId, 8, 10);
        Assert.True(_foreign.TryTake(frame, _guest.Owner));
        Assert.Equal(0, RemoveFromPhysmap(_guest, DomainId.Self, 3));
        Assert.True(StillTheGuests(frame));

        UnmapGrant(_dom0, handle, 10);
        Assert.True(StillTheGuests(frame));                                   // Dom0's foreign mapping still holds it

        Assert.True(_foreign.Release(frame));
        Assert.False(_machine.Memory.TryGetOwner(frame, out _));
    }

    // ---- XENMAPSPACE_grant_table over a RAM page something still maps ----------------------------------------------

    /// <summary>
    /// The guest grants its RAM gfn 3 to itself and maps it at gfn 10 (a grant reference on the frame), then places grant
    /// frame 0 at gfn 3. Xen (xen/arch/x86/mm/p2m.c <c>xenmem_add_to_physmap_one</c>): the previous page is not special,
    /// so <c>guest_remove_page</c> (xen/common/memory.c) drops its allocation reference; the page goes at the grant
    /// mapping's last <c>put_page</c> (grant_table.c <c>unmap_common_complete</c>), once, and the domain's teardown
    /// (<c>domain_relinquish_resources</c>) no longer sees it. (Found in review: the handler used to leave the removal
    /// to VmmKit.GrantTable while the domain's frame list kept the page, so XEN_DOMCTL_destroydomain freed it again
    /// and threw in the host.)
    /// </summary>
    [Fact]
    public void Grant_frame_placed_over_a_mapped_ram_page_then_domain_destroy_does_not_throw()
    {
        MachineFrameNumber frame = FrameAt(_guest, 3);
        Grant(8, GuestId, 3);
        uint handle = MapGrant(_guest, GuestId, 8, 10);
        Assert.Equal(0, AddToPhysmap(_guest, XenMapSpace.GrantTable, 0, 3));
        Assert.Equal(_guest.Grants.GetSharedFrame(0), FrameAt(_guest, 3));
        Assert.True(OwnedBy(frame, GuestId));                                 // still held by the grant mapping
        UnmapGrant(_guest, handle, 10);
        Assert.False(_machine.Memory.TryGetOwner(frame, out _));              // the last put_page freed it

        Exception? thrown = Record.Exception(() => DestroyGuest());
        Assert.Null(thrown);                                                  // no second free at domain death
        Assert.Null(_machine.FindDomain(GuestId));
    }

    /// <summary>
    /// Same sequence; meanwhile another domain is given the freed frame (it is in the pool, so the allocator may hand it
    /// to anyone). Xen frees a page once (<c>free_domheap_pages</c> at its last <c>put_page</c>): the guest's teardown
    /// must not free the victim's page (it did, through a stale frame list: a cross-domain use after free).
    /// </summary>
    [Fact]
    public void Grant_frame_placed_over_a_mapped_ram_page_then_domain_destroy_leaves_other_domains_pages_alone()
    {
        MachineFrameNumber frame = FrameAt(_guest, 3);
        Grant(8, GuestId, 3);
        uint handle = MapGrant(_guest, GuestId, 8, 10);
        Assert.Equal(0, AddToPhysmap(_guest, XenMapSpace.GrantTable, 0, 3));
        UnmapGrant(_guest, handle, 10);
        Assert.True(VictimGets(frame, out Domain victim));                    // in the pool: the next domain may get it
        string use = frame == victim.SharedInfoFrame ? "shared_info" : frame == victim.Ept.Pointer.Root ? "EPT root table" : "frame";

        _ = Record.Exception(() => DestroyGuest());

        Assert.True(OwnedBy(frame, VictimId), $"the victim's {use} was freed by the guest's teardown");
    }

    /// <summary>
    /// The guest maps shared_info at gfn 5, grants gfn 5 to itself and maps the grant at gfn 10, then places grant frame 0
    /// at gfn 5. Xen (p2m.c <c>xenmem_add_to_physmap_one</c>): shared_info is a special page (<c>is_special_page</c>), "simply
    /// unhooked from this phys slot" by <c>guest_physmap_remove_page</c>, never freed while the domain lives (it was
    /// freed here once, while the domain's event channels and vCPUs still wrote into it: a cross-domain write).
    /// </summary>
    [Fact]
    public void Shared_info_under_a_grant_frame_is_unhooked_never_freed_even_while_granted()
    {
        MachineFrameNumber sharedInfo = _guest.SharedInfoFrame;
        Assert.Equal(0, AddToPhysmap(_guest, XenMapSpace.SharedInfo, 0, 5));
        Grant(8, GuestId, 5);
        uint handle = MapGrant(_guest, GuestId, 8, 10);
        Assert.Equal(0, AddToPhysmap(_guest, XenMapSpace.GrantTable, 0, 5));
        UnmapGrant(_guest, handle, 10);

        Assert.True(OwnedBy(sharedInfo, GuestId));
        Assert.False(_machine.Frames.IsFreePending(sharedInfo));
        Assert.Null(_guest.SharedInfoGfn);                                    // unhooked: no longer at gfn 5
        Assert.Equal(0, AddToPhysmap(_guest, XenMapSpace.SharedInfo, 0, 6)); // and may be placed again
        Assert.Equal(sharedInfo, FrameAt(_guest, 6));
    }

    // ---- VCPUOP_register_vcpu_info holds no reference ------------------------------------------------------------

    private long RegisterVcpuInfo(ulong gfn, uint offset)
    {
        MemoryMarshal.Write(_page.Bytes, new VcpuRegisterVcpuInfo { Mfn = gfn, Offset = offset });
        return Call(_guest, HypercallNumber.VcpuOp, (ulong)VcpuOp.RegisterVcpuInfo, 0, 0);
    }

    /// <summary>
    /// The guest moves vCPU 0's vcpu_info to its RAM gfn 3 (VCPUOP_register_vcpu_info), then removes gfn 3. Xen
    /// (xen/common/domain.c <c>map_vcpu_info</c>): the page is taken with <c>get_page_from_gfn</c> +
    /// <c>get_page_type(PGT_writable_page)</c> and kept until <c>unmap_vcpu_info</c> at domain teardown, so
    /// <c>guest_remove_page</c> only drops the allocation reference and the page stays allocated to the domain (without
    /// that reference, remove_from_physmap freed the frame while the hypervisor kept writing the vcpu_info into it).
    /// </summary>
    [Fact]
    public void A_page_holding_a_registered_vcpu_info_stays_allocated_when_removed_from_the_physmap()
    {
        MachineFrameNumber frame = FrameAt(_guest, 3);
        Assert.Equal(0, RegisterVcpuInfo(3, 64));
        Assert.Equal(0, RemoveFromPhysmap(_guest, DomainId.Self, 3));
        Assert.False(_guest.Ept.TryLookup(new GuestFrameNumber(3), out _, out _));
        Assert.True(OwnedBy(frame, GuestId));                                 // map_vcpu_info's reference keeps it
    }

    /// <summary>
    /// Continuation of the above: once the removed frame is handed to another domain, the guest's next pvclock update
    /// (VcpuTime.UpdateTimeInfo, made at every schedule, as Xen's <c>update_vcpu_system_time</c>) writes into the other
    /// domain's page. Xen never lets the frame leave the domain while the vcpu_info mapping holds it.
    /// </summary>
    [Fact]
    public void A_removed_vcpu_info_page_given_to_another_domain_is_not_written_by_the_guests_vcpu()
    {
        MachineFrameNumber frame = FrameAt(_guest, 3);
        Assert.Equal(0, RegisterVcpuInfo(3, 64));
        Assert.Equal(0, RemoveFromPhysmap(_guest, DomainId.Self, 3));
        if (!VictimGets(frame, out _))
            return;                                                            // the frame stayed the guest's: nothing to hit

        byte[] before = _machine.Memory.GetFrame(frame).ToArray();
        _guest.Vcpus[0].Time.UpdateTimeInfo(_guest.Vcpus[0]);
        Assert.Equal(before, _machine.Memory.GetFrame(frame).ToArray());      // the victim's page is untouched
    }

    // ---- Accounting ---------------------------------------------------------------------------------------------

    /// <summary>
    /// max_mem 4, four pages populated; Dom0 grant-maps the guest's gfn 3 and the guest removes it. Xen: the page stays
    /// allocated to the domain and in <c>tot_pages</c> until the grant mapping's last <c>put_page</c>
    /// (page_alloc.c <c>free_domheap_pages</c> is where <c>domain_adjust_tot_pages(d, -1)</c> happens), so
    /// XENMEM_populate_physmap for the domain is refused (<c>assign_pages</c>: tot_pages + 1 &gt; max_pages) and the domain
    /// never holds more than max_mem pages of RAM (counting only populated pages let a fifth in while the fourth was
    /// still the domain's, mapped by Dom0).
    /// </summary>
    [Fact]
    public void A_removed_page_still_grant_mapped_counts_against_max_mem_until_unmapped()
    {
        _guest.SetMaxPages(4);
        Grant(8, 0, 3);
        uint handle = MapGrant(_dom0, GuestId, 8, 10);
        MachineFrameNumber frame = FrameAt(_guest, 3);
        Assert.Equal(0, RemoveFromPhysmap(_guest, DomainId.Self, 3));
        Assert.True(OwnedBy(frame, GuestId));                                 // pending: still the guest's

        Assert.Equal(0, PopulateByToolstack(GuestId, 4));                     // assign_pages refuses: 0 extents done
        Assert.False(_guest.Ept.TryLookup(new GuestFrameNumber(4), out _, out _));

        UnmapGrant(_dom0, handle, 10);
        Assert.False(_machine.Memory.TryGetOwner(frame, out _));
        Assert.Equal(1, PopulateByToolstack(GuestId, 4));                     // now within max_mem again
    }

    /// <summary>
    /// XEN_DOMCTL_max_mem below what the domain has (xen/common/domctl.c): accepted, "the domain will now be allowed to
    /// ratchet down to new_max. In the meantime, while tot > max, all new allocations are disallowed."
    /// </summary>
    [Fact]
    public void A_max_mem_below_what_the_domain_has_is_accepted_and_allocations_wait_until_it_shrinks_below()
    {
        MemoryMarshal.Write(_page.Bytes, new XenDomctl { Cmd = ToolsAbi.DomctlMaxMem, InterfaceVersion = ToolsAbi.DomctlInterfaceVersion, Domain = GuestId, MaxMemKb = 2 * 4 });
        Assert.Equal(0, Call(_dom0, HypercallNumber.Domctl, 0));             // 2 pages; the guest has 4
        Assert.Equal(0, PopulateByToolstack(GuestId, 4));                     // refused: 0 extents done
        Assert.Equal(0, RemoveFromPhysmap(_guest, DomainId.Self, 3));
        Assert.Equal(0, RemoveFromPhysmap(_guest, DomainId.Self, 2));
        Assert.Equal(0, PopulateByToolstack(GuestId, 4));                     // 2 of 2: still refused
        Assert.Equal(0, RemoveFromPhysmap(_guest, DomainId.Self, 1));
        Assert.Equal(1, PopulateByToolstack(GuestId, 4));
    }

    // ---- add_to_physmap ordering and the page it displaces --------------------------------------------------------

    /// <summary>
    /// XENMAPSPACE_grant_table with an index Xen refuses (a status frame under v1). Xen (p2m.c
    /// <c>xenmem_add_to_physmap_one</c>) calls <c>gnttab_map_frame</c> first and returns its -EINVAL before looking at the
    /// slot, so the RAM page at gpfn is untouched (removing it first lost the page and its contents on a failed call).
    /// </summary>
    [Fact]
    public void A_refused_grant_table_add_to_physmap_leaves_the_ram_page_in_place()
    {
        MachineFrameNumber frame = FrameAt(_guest, 3);
        Assert.Equal(XenErrno.EINVAL.Negated(), AddToPhysmap(_guest, XenMapSpace.GrantTable, GrantTableHost.GrantTableStatusIndex, 3));
        Assert.True(_guest.Ept.TryLookup(new GuestFrameNumber(3), out var still, out _));
        Assert.Equal(frame, still);
        Assert.True(_guest.Physical.TryRead(new GuestPhysicalAddress(3 * 4096), out uint seen));
        Assert.Equal(0xC0FFEEu, seen);
    }

    /// <summary>
    /// XENMAPSPACE_shared_info placed over a RAM page. Xen (p2m.c <c>xenmem_add_to_physmap_one</c>): the previous page is
    /// ordinary domain memory, freed by <c>guest_remove_page</c> "to avoid leaking memory": it leaves tot_pages (only
    /// overwriting the EPT entry leaked it, charged against max_mem, until the domain died).
    /// </summary>
    [Fact]
    public void Shared_info_placed_over_a_ram_page_frees_that_page()
    {
        MachineFrameNumber frame = FrameAt(_guest, 3);
        ulong before = TotPages(GuestId);
        Assert.Equal(0, AddToPhysmap(_guest, XenMapSpace.SharedInfo, 0, 3));
        Assert.Equal(_guest.SharedInfoFrame, FrameAt(_guest, 3));
        Assert.False(_machine.Memory.TryGetOwner(frame, out _));
        Assert.Equal(before - 1, TotPages(GuestId));
    }

    /// <summary>
    /// XENMAPSPACE_shared_info placed over a grant mapping the guest holds (Dom0's page... here the guest maps Dom0's
    /// grant). Xen (p2m.c <c>xenmem_add_to_physmap_one</c> → memory.c <c>guest_remove_page</c>): <c>get_page(page, d)</c>
    /// fails on the granter's page, -ENXIO, and nothing changes (GrantTableHost.AddToPhysmap answers the same for the
    /// grant_table space); overwriting the grant mapping's EPT entry would leave its maptrack entry, and the grant unmap
    /// would then tear down the shared_info mapping instead.
    /// </summary>
    [Fact]
    public void Shared_info_placed_over_a_grant_mapping_is_refused_with_enxio()
    {
        // Dom0 grants its gfn 2 to the guest in entry 8 of Dom0's table; the guest maps it at gfn 10.
        MemoryMarshal.Write(_machine.Memory.GetFrame(_dom0.Grants.GetSharedFrame(0))[(8 * GrantEntryV1.Size)..],
            new GrantEntryV1 { Flags = (ushort)GrantEntryFlags.PermitAccess, DomId = GuestId, Frame = 2 });
        uint handle = MapGrant(_guest, 0, 8, 10);
        MachineFrameNumber granted = FrameAt(_guest, 10);

        Assert.Equal(XenErrno.ENXIO.Negated(), AddToPhysmap(_guest, XenMapSpace.SharedInfo, 0, 10));
        Assert.Equal(granted, FrameAt(_guest, 10));
        UnmapGrant(_guest, handle, 10);
    }

    /// <summary>
    /// The guest maps a grant over the gfn holding its shared_info, then places shared_info at another gfn. The grant
    /// replaced shared_info at the slot (guest_physmap_add_entry: the old page's M2P entry goes), so moving shared_info
    /// must leave the grant mapping where it is (xenmem_add_to_physmap_one removes only the gfn the M2P still gives
    /// for the shared_info frame), and unmapping the grant later still works.
    /// </summary>
    [Fact]
    public void Moving_shared_info_leaves_a_grant_mapped_over_its_old_slot()
    {
        Assert.Equal(0, AddToPhysmap(_guest, XenMapSpace.SharedInfo, 0, 10));
        MemoryMarshal.Write(_machine.Memory.GetFrame(_dom0.Grants.GetSharedFrame(0))[(8 * GrantEntryV1.Size)..],
            new GrantEntryV1 { Flags = (ushort)GrantEntryFlags.PermitAccess, DomId = GuestId, Frame = 2 });
        uint handle = MapGrant(_guest, 0, 8, 10);
        MachineFrameNumber granted = FrameAt(_guest, 10);
        Assert.NotEqual(_guest.SharedInfoFrame, granted);

        Assert.Equal(0, AddToPhysmap(_guest, XenMapSpace.SharedInfo, 0, 11));
        Assert.Equal(_guest.SharedInfoFrame, FrameAt(_guest, 11));
        Assert.Equal(granted, FrameAt(_guest, 10));
        UnmapGrant(_guest, handle, 10);
    }

    // ---- Stale translations of the other vCPUs (coverage) --------------------------------------------------------

    /// <summary>
    /// vCPU 1 of the guest has gfn 2 in its translation cache; vCPU 0 removes gfn 2 (XENMEM_remove_from_physmap). Xen
    /// flushes every vCPU of the domain before the page is freed (p2m_remove_page → the p2m's TLB flush, then the
    /// <c>put_page</c> in <c>guest_remove_page</c>): vCPU 1's next access faults. Likewise after a grant unmap
    /// (grant_table.c: <c>gnttab_flush_tlb</c> before <c>unmap_common_complete</c>).
    /// </summary>
    [Fact]
    public void Other_vcpus_lose_the_translation_of_a_removed_page_and_of_an_unmapped_grant()
    {
        var vcpu1 = _guest.Vcpus[1];
        Assert.True(vcpu1.Physical.TryRead(new GuestPhysicalAddress(2 * 4096), out uint _));
        Assert.Equal(0, RemoveFromPhysmap(_guest, DomainId.Self, 2));
        Assert.False(vcpu1.Physical.TryRead(new GuestPhysicalAddress(2 * 4096), out uint _));

        Grant(8, GuestId, 3);
        uint handle = MapGrant(_guest, GuestId, 8, 10);
        Assert.True(vcpu1.Physical.TryRead(new GuestPhysicalAddress(10 * 4096), out uint seen));
        Assert.Equal(0xC0FFEEu, seen);
        UnmapGrant(_guest, handle, 10);
        Assert.False(vcpu1.Physical.TryRead(new GuestPhysicalAddress(10 * 4096), out uint _));
    }

    // ---- Domain creation that runs out of memory ---------------------------------------------------------------

    /// <summary>Dom0's XEN_DOMCTL_createdomain of a PVH domain with domid <paramref name="domid"/>.</summary>
    private long CreateDomainByToolstack(ushort domid)
    {
        MemoryMarshal.Write(_page.Bytes, new XenDomctl
        {
            Cmd = ToolsAbi.DomctlCreateDomain, InterfaceVersion = ToolsAbi.DomctlInterfaceVersion, Domain = domid,
            CreateDomain = new XenDomctlCreateDomain
            {
                Flags = ToolsAbi.CdfHvm | ToolsAbi.CdfHap, MaxVcpus = 1, MaxGrantFrames = -1, MaxMaptrackFrames = -1, GrantOpts = 2,   // xl's defaults
            },
        });
        return Call(_dom0, HypercallNumber.Domctl, 0);
    }

    /// <summary>
    /// XEN_DOMCTL_createdomain with too few machine frames left for the new domain's EPT root, shared_info page or first
    /// grant-table frame: -ENOMEM, and nothing of the half-built domain stays (Xen's <c>domain_create</c> frees what it
    /// allocated on its <c>fail</c> path). Its id stays free: getdomaininfo does not list it, no frame is charged to it,
    /// and once memory is back the same domid is created.
    /// </summary>
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    public void A_domain_creation_out_of_memory_leaves_nothing_behind_and_its_id_free(int framesLeft)
    {
        const ushort NewId = 7;
        var hog = new FrameOwner(4000);
        var taken = new List<MachineFrameNumber>();
        while (_machine.Memory.FreeFrames > (ulong)framesLeft && _machine.Memory.TryAllocateFrame(hog, out var f))
            taken.Add(f);
        Assert.Equal((ulong)framesLeft, _machine.Memory.FreeFrames);

        Assert.Equal(XenErrno.ENOMEM.Negated(), CreateDomainByToolstack(NewId));
        Assert.Null(_machine.FindDomain(NewId));
        Assert.Equal(0ul, _machine.Memory.FramesOwnedBy(new FrameOwner(NewId)));
        Assert.Equal((ulong)framesLeft, _machine.Memory.FreeFrames);
        Assert.Null(DomainInfo(NewId));

        foreach (var f in taken)
            _machine.Memory.FreeFrame(f);
        Assert.Equal(0, CreateDomainByToolstack(NewId));
        Assert.Equal(NewId, MemoryMarshal.Read<XenDomctl>(_page.Bytes).Domain);
        Assert.NotNull(_machine.FindDomain(NewId));
    }
}
