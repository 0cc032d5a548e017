using VmmKit.Ept;
using VmmKit.Hypercall;
using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor.Hypercalls;

/// <summary>
/// <c>__HYPERVISOR_memory_op(cmd, arg)</c> (xen/common/memory.c, xen/arch/x86/mm.c): the queries a
/// PVH guest makes at boot and the shared_info mapping.
/// </summary>
internal static class MemoryOpHypercall
{
    /// <summary>The highest guest frame a mapping may target: below 2^46 (the EPT's physical-address width).</summary>
    private const ulong MaxGpfn = (1ul << (46 - 12)) - 1;

    /// <summary>
    /// The start extent a continuation keeps in <c>cmd</c>'s bits above <c>MEMOP_EXTENT_SHIFT</c> (6); operations that take
    /// none refuse it (xen/common/memory.c, <c>do_memory_op</c>).
    /// </summary>
    private static ulong StartExtent(ref HypercallCall<VirtualCpu> call) => call.Argument(0) >> 6;

    /// <summary>
    /// XENMEM_maximum_ram_page: Xen 4.17's <c>do_memory_op</c> returns <c>max_page</c>, one past the highest machine frame
    /// (the frame count); -EINVAL with a start extent.
    /// </summary>
    public static long MaximumRamPage(ref HypercallCall<VirtualCpu> call)
    {
        if (StartExtent(ref call) != 0)
            return XenErrno.EINVAL.Negated();
        ulong max = call.Caller.Domain.Machine.Memory.FrameCount;
        return (long)Math.Min(max, call.Abi == HypercallAbi.Compat32 ? (ulong)int.MaxValue : long.MaxValue);
    }

    /// <summary>XENMEM_current_reservation: the domain's page count (<c>tot_pages</c>).</summary>
    public static long CurrentReservation(ref HypercallCall<VirtualCpu> call)
    {
        if (StartExtent(ref call) != 0)
            return XenErrno.EINVAL.Negated();
        if (!call.TryCopyFromGuest(call.Argument(1), out ushort domid))
            return XenErrno.EFAULT.Negated();
        long rc = HypercallTable.CheckSelf(call.Caller, domid);
        return rc != 0 ? rc : (long)call.Caller.Domain.RamPages;
    }

    /// <summary>
    /// XENMEM_get_vnumainfo as Xen 4.17's <c>do_memory_op</c> answers it for a domain without a vNUMA topology (none has
    /// one here; the sub-op XENFEAT_memory_op_vnode_supported names): -EINVAL with a start extent, -EFAULT for an
    /// unreadable <c>struct xen_vnuma_topology_info</c> (40 bytes in both layouts), -EINVAL for a nonzero <c>pad</c>,
    /// -ESRCH for a missing domain, -EPERM for another domain (XSM_TARGET), then -EOPNOTSUPP; nothing is written.
    /// </summary>
    public static long GetVnumaInfo(ref HypercallCall<VirtualCpu> call)
    {
        if (StartExtent(ref call) != 0)
            return XenErrno.EINVAL.Negated();
        Span<byte> topology = stackalloc byte[40];
        if (!call.TryCopyFromGuest(call.Argument(1), topology))
            return XenErrno.EFAULT.Negated();
        if (topology[2] != 0 || topology[3] != 0)
            return XenErrno.EINVAL.Negated();
        var caller = call.Caller.Domain;
        ushort domid = System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(topology);
        Domain? target = domid == DomainId.Self ? caller : caller.Machine.FindDomain(domid);
        if (target is null)
            return XenErrno.ESRCH.Negated();
        if (target != caller && !caller.IsPrivileged)
            return XenErrno.EPERM.Negated();
        return XenErrno.EOPNOTSUPP.Negated();
    }

    /// <summary>XENMEM_memory_map: the domain's e820 map (one RAM range), truncated to the caller's buffer.</summary>
    public static long MemoryMap(ref HypercallCall<VirtualCpu> call)
    {
        // arch_memory_op matches the whole cmd, so with extent bits no case matches: -ENOSYS (xen/arch/x86/mm.c).
        if (StartExtent(ref call) != 0)
            return XenErrno.ENOSYS.Negated();
        ulong arg = call.Argument(1);
        uint capacity;
        ulong buffer;
        if (call.Abi == HypercallAbi.Native64)
        {
            if (!call.TryCopyFromGuest(arg, out XenMemoryMap map))
                return XenErrno.EFAULT.Negated();
            (capacity, buffer) = (map.NrEntries, map.Buffer);
        }
        else
        {
            if (!call.TryCopyFromGuest(arg, out CompatXenMemoryMap map))
                return XenErrno.EFAULT.Negated();
            (capacity, buffer) = (map.NrEntries, map.Buffer);
        }

        // RAM, then the toolstack's reserved pages at the top (console and XenStore rings), as in hvm_start_info's map.
        var domain = call.Caller.Domain;
        ulong usable = domain.MemoryBytes - (Domain.SpecialPages * Page.PageSize);
        Span<E820Entry> entries =
        [
            new E820Entry { Addr = 0, Size = usable, Type = E820Entry.TypeRam },
            new E820Entry { Addr = usable, Size = Domain.SpecialPages * Page.PageSize, Type = E820Entry.TypeReserved },
        ];
        uint count = Math.Min(capacity, (uint)entries.Length);
        for (int i = 0; i < count; i++)
        {
            if (!call.TryCopyToGuest(buffer + ((ulong)i * 20), in entries[i]))
                return XenErrno.EFAULT.Negated();
        }

        bool ok = call.Abi == HypercallAbi.Native64
            ? call.TryCopyToGuest(arg, new XenMemoryMap { NrEntries = count, Buffer = buffer })
            : call.TryCopyToGuest(arg, new CompatXenMemoryMap { NrEntries = count, Buffer = (uint)buffer });
        return ok ? 0 : XenErrno.EFAULT.Negated();
    }

    /// <summary>
    /// XENMEM_add_to_physmap with XENMAPSPACE_shared_info: maps the domain's shared_info frame at <c>gpfn</c> and removes
    /// the frame's previous mapping (Xen's <c>xenmem_add_to_physmap_one</c>): a RAM page there is removed first as by
    /// XENMEM_remove_from_physmap, a grant-table frame unhooked, a grant mapping refused (-ENXIO). XENMAPSPACE_gmfn and
    /// gmfn_range are not implemented (-ENOSYS); gmfn_foreign is -ENOSYS, dev_mmio -EACCES and an unknown space -EINVAL,
    /// as Xen 4.17. A start extent that does not fit <c>xatp.size</c> (16 bits) is -EDOM; the shared_info space
    /// ignores a smaller one. No frame for an EPT table is -ENOMEM, shared_info's previous mapping left in place.
    /// </summary>
    public static long AddToPhysmap(ref HypercallCall<VirtualCpu> call)
    {
        if (StartExtent(ref call) > ushort.MaxValue)
            return XenErrno.EDOM.Negated();
        ushort domid;
        uint space;
        ulong idx, gpfn;
        ulong arg = call.Argument(1);
        if (call.Abi == HypercallAbi.Native64)
        {
            if (!call.TryCopyFromGuest(arg, out XenAddToPhysmap x))
                return XenErrno.EFAULT.Negated();
            (domid, space, idx, gpfn) = (x.Domid, x.Space, x.Idx, x.Gpfn);
        }
        else
        {
            if (!call.TryCopyFromGuest(arg, out CompatXenAddToPhysmap x))
                return XenErrno.EFAULT.Negated();
            (domid, space, idx, gpfn) = (x.Domid, x.Space, x.Idx, x.Gpfn);
        }

        // Xen 4.17's do_memory_op: gmfn_foreign is -ENOSYS before the domain is looked up (-ESRCH); then
        // xatp_permission_check: dev_mmio only for the hardware domain on itself (-EACCES), then XSM (-EPERM).
        if (space == (uint)XenMapSpace.GmfnForeign)
            return XenErrno.ENOSYS.Negated();
        var caller = call.Caller.Domain;
        bool self = domid == DomainId.Self || domid == caller.Id;
        if (!self && caller.Machine.FindDomain(domid) is null)
            return XenErrno.ESRCH.Negated();
        if (space == (uint)XenMapSpace.DevMmio && !(self && caller.IsPrivileged))
            return XenErrno.EACCES.Negated();
        if (!self)
            return XenErrno.EPERM.Negated();
        if (space == (uint)XenMapSpace.GrantTable)
            return AddGrantTableFrame(call.Caller, idx, gpfn);
        // XENMAPSPACE_gmfn and gmfn_range are not implemented; xenmem_add_to_physmap_one finds no frame for a space it
        // does not know (dev_mmio included, on x86): -EINVAL.
        if (space is (uint)XenMapSpace.Gmfn or (uint)XenMapSpace.GmfnRange)
            return XenErrno.ENOSYS.Negated();
        if (space != (uint)XenMapSpace.SharedInfo || idx != 0 || gpfn > MaxGpfn)
            return XenErrno.EINVAL.Negated();

        var domain = call.Caller.Domain;
        using (domain.PhysmapLock.Write())   // the slot looked at and changed in one step, as under Xen's p2m lock
        {
            return AddSharedInfo(domain, gpfn);
        }
    }

    /// <summary>XENMAPSPACE_shared_info at <paramref name="gpfn"/>, with the domain's physmap lock held.</summary>
    private static long AddSharedInfo(Domain domain, ulong gpfn)
    {
        var machine = domain.Machine;
        var gfn = new GuestFrameNumber(gpfn);
        long rc = 0;

        // xenmem_add_to_physmap_one: the slot's page goes first. A grant mapping is not the domain's page
        // (guest_remove_page: get_page(page, d) fails, -ENXIO); a grant-table frame is unhooked; a RAM page is removed.
        if (machine.Grants.IsGrantMapping(domain.Grants, gfn))
            return XenErrno.ENXIO.Negated();
        MachineFrameNumber? released = null;
        if (domain.SharedInfoGfn != gpfn && domain.Ept.TryLookup(gfn, out var slotPage, out _))
        {
            if (domain.IsGrantTableFrame(slotPage))
                machine.Grants.RemoveTableFrame(domain.Grants, gfn);
            else if (!RemoveSlotPage(domain, gfn, slotPage, out released))
                return XenErrno.ENOMEM.Negated();
        }

        try
        {
            domain.Ept.Map(new GuestPhysicalAddress(gpfn << Page.PageShift), domain.SharedInfoFrame, 1, EptAccess.Read | EptAccess.Write);
            if (domain.SharedInfoGfn is { } old && old != gpfn)
                domain.Ept.Unmap(new GuestPhysicalAddress(old << Page.PageShift), 1);
            domain.SharedInfoGfn = gpfn;
        }
        catch (MachineMemoryExhaustedException)
        {
            rc = XenErrno.ENOMEM.Negated();
        }

        FlushEpt(domain);
        if (released is { } page)
            FreeRemovedPage(domain, page);
        return rc;
    }

    /// <summary>
    /// XENMEM_remove_from_physmap (xen/common/memory.c): the page at <c>gpfn</c> of the domain leaves its physmap; a
    /// continuation (start extent) is -EINVAL; another domain needs a privileged caller (-EPERM; -ESRCH when it does not
    /// exist); nothing mapped there is -ENOENT (Xen's <c>get_page_from_gfn</c> finds no page). A grant-table frame goes
    /// through VmmKit.GrantTable (<see cref="VmmKit.GrantTable.GrantTableHost.RemoveTableFrame"/>), a grant mapping there is
    /// -EBUSY (GNTTABOP_unmap_grant_ref removes it), shared_info leaves its gfn; a RAM page is unmapped, leaves the
    /// domain's tot_pages and returns to the host once nothing maps it (<see cref="FreeRemovedPage"/>; Dom0's own RAM stays
    /// charged: <see cref="Domain.TryReleaseRamFrame"/>). A later access to the gfn is an access to an unpopulated gfn.
    /// </summary>
    public static long RemoveFromPhysmap(ref HypercallCall<VirtualCpu> call)
    {
        if (StartExtent(ref call) != 0)
            return XenErrno.EINVAL.Negated();
        ushort domid;
        ulong gpfn;
        ulong arg = call.Argument(1);
        if (call.Abi == HypercallAbi.Native64)
        {
            if (!call.TryCopyFromGuest(arg, out XenRemoveFromPhysmap x))
                return XenErrno.EFAULT.Negated();
            (domid, gpfn) = (x.Domid, x.Gpfn);
        }
        else
        {
            if (!call.TryCopyFromGuest(arg, out CompatXenRemoveFromPhysmap x))
                return XenErrno.EFAULT.Negated();
            (domid, gpfn) = (x.Domid, x.Gpfn);
        }

        var caller = call.Caller.Domain;
        Domain? domain = domid == DomainId.Self ? caller : caller.Machine.FindDomain(domid);
        if (domain is null || domain.IsDying)
            return XenErrno.ESRCH.Negated();
        if (domain != caller && !caller.IsPrivileged)
            return XenErrno.EPERM.Negated();
        if (gpfn > MaxGpfn)
            return XenErrno.ENOENT.Negated();

        // Under the domain's physmap lock (Xen's get_page_from_gfn and guest_physmap_remove_page under the gfn lock): of
        // two removals of one page at once, one removes and frees it, the other finds nothing (-ENOENT).
        using (domain.PhysmapLock.Write())
        {
            var gfn = new GuestFrameNumber(gpfn);
            long rc = domain.Machine.Grants.RemoveTableFrame(domain.Grants, gfn);
            domain.Machine.PhysmapSlotLooked?.Invoke(domain, gpfn);
            MachineFrameNumber? released = null;
            if (rc == XenErrno.ENOENT.Negated() && domain.Ept.TryLookup(gfn, out var frame, out _))
                rc = RemoveSlotPage(domain, gfn, frame, out released) ? 0 : XenErrno.ENOMEM.Negated();

            FlushEpt(domain);
            if (released is { } page)
                FreeRemovedPage(domain, page);
            return rc;
        }
    }

    /// <summary>
    /// A removed RAM page goes back to the host allocator once nothing maps it (Xen's <c>put_page</c> of the last
    /// reference): at once when unreferenced, else when the last grant mapping or foreign mapping of Dom0 goes (both
    /// hold references in VmmKit.GrantTable's <see cref="VmmKit.GrantTable.FrameReferences"/>, see
    /// <see cref="Host.ForeignMappings"/>). Until then it keeps its contents and still counts against the domain's
    /// max_mem (<see cref="Domain.ChargeUntilFreed"/>).
    /// </summary>
    private static void FreeRemovedPage(Domain domain, MachineFrameNumber frame)
    {
        if (!domain.Machine.Frames.Free(frame))
            domain.ChargeUntilFreed(frame);   // Xen's tot_pages drops only in free_domheap_pages
    }

    /// <summary>
    /// XENMAPSPACE_grant_table as Xen's <c>xenmem_add_to_physmap_one</c>: the table frame first
    /// (<see cref="VmmKit.GrantTable.GrantTableHost.GetTableFrame"/>, Xen's <c>gnttab_map_frame</c>: a refused index changes
    /// nothing), then the slot's page goes (<see cref="RemoveSlotPage"/>), then VmmKit.GrantTable places shared frame
    /// <c>idx</c>, or status frame <c>idx &amp; ~XENMAPIDX_grant_table_status</c>, at <c>gpfn</c>
    /// (<see cref="VmmKit.GrantTable.GrantTableHost.AddToPhysmap"/>: -ENXIO over a grant mapping).
    /// </summary>
    private static long AddGrantTableFrame(VirtualCpu caller, ulong idx, ulong gpfn)
    {
        var domain = caller.Domain;
        var machine = domain.Machine;
        if (gpfn > MaxGpfn)
            return XenErrno.EINVAL.Negated();
        using (domain.PhysmapLock.Write())   // the slot looked at and changed in one step, as under Xen's p2m lock
        {
            long rc = machine.Grants.GetTableFrame(domain.Grants, idx, out _);
            if (rc != 0)
                return rc;
            var gfn = new GuestFrameNumber(gpfn);
            MachineFrameNumber? released = null;
            bool present = domain.Ept.TryLookup(gfn, out var old, out _);
            machine.PhysmapSlotLooked?.Invoke(domain, gpfn);
            if (present && !domain.IsGrantTableFrame(old)
                && !machine.Grants.IsGrantMapping(domain.Grants, gfn) && !RemoveSlotPage(domain, gfn, old, out released))
                return XenErrno.ENOMEM.Negated();

            rc = machine.Grants.AddToPhysmap(domain.Grants, idx, gfn);
            FlushEpt(domain);
            if (released is { } page)
                FreeRemovedPage(domain, page);
            return rc;
        }
    }

    /// <summary>
    /// The removal of the page at a slot (XENMEM_remove_from_physmap, or <c>xenmem_add_to_physmap_one</c> before another
    /// page takes the slot): shared_info, a special page, is only unhooked (<c>guest_physmap_remove_page</c>); a RAM page
    /// is removed as <c>guest_remove_page</c> does, and <paramref name="released"/> is the frame for the caller to free
    /// (<see cref="FreeRemovedPage"/>) once the EPT is flushed. False, with nothing changed, when the EPT has no frame to split the large page holding the slot.
    /// </summary>
    private static bool RemoveSlotPage(Domain domain, GuestFrameNumber gfn, MachineFrameNumber page, out MachineFrameNumber? released)
    {
        released = null;
        try
        {
            domain.Ept.Unmap(gfn.Address, 1);
        }
        catch (MachineMemoryExhaustedException)
        {
            return false;
        }

        if (domain.SharedInfoGfn == gfn.Value)
            domain.SharedInfoGfn = null;
        else if (domain.TryReleaseRamFrame(page))
            released = page;
        return true;
    }

    /// <summary>
    /// The mapping changed under running vCPUs: INVEPT, as Xen's p2m code flushes after an update. Every accessor of the
    /// domain's EPT drops its translations at its next access, a vCPU in a hypercall on another thread included (its own
    /// flush waits for its next entry, and a page freed after this call must not stay reachable through its cache).
    /// </summary>
    internal static void FlushEpt(Domain domain)
    {
        GuestPhysicalMemory.InvalidateSingleContext(domain.Machine.Memory, domain.Ept.Pointer);
        domain.Physical.InvalidateSingleContext();
        foreach (var v in domain.Vcpus)
            v.InvalidateEpt();   // this vCPU's caches too; a vCPU on another thread flushes before the call returns
    }
}
