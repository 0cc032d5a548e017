using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable;

// Table management: growth, setup_table, query_size, set_version, get_version, get_status_frames,
// swap_grant_ref and XENMAPSPACE_grant_table (grant_table.c: gnttab_grow_table, gnttab_setup_table,
// gnttab_query_size, gnttab_set_version, gnttab_get_status_frames, swap_grant_ref, gnttab_map_frame).
public sealed unsafe partial class GrantTableHost
{
    /// <summary><c>XENMAPIDX_grant_table_status</c> (xen/memory.h): set in the index to name a v2 status frame.</summary>
    public const ulong GrantTableStatusIndex = 0x8000_0000;

    /// <summary>The value reported for a table frame the guest has not placed in its physical address space (<c>INVALID_GFN</c>).</summary>
    public const ulong InvalidFrame = ulong.MaxValue;

    private const int ReservedEntries = 8; // GNTTAB_NR_RESERVED_ENTRIES

    /// <summary>Grows <paramref name="d"/>'s table to <paramref name="frames"/> shared frames (and the status frames v2 needs); 0 or -ENOMEM.</summary>
    private long GrowTable(GrantDomain d, int frames)
    {
        int oldShared = d.SharedFrameCount;
        int oldStatus = d.StatusFrameCount;
        int wantStatus = d.Version == 2 ? GrantDomain.StatusFramesFor(frames) : 0;
        if (!AllocateFrames(d.SharedFrames, oldShared, frames))
        {
            return XenErrno.ENOMEM.Negated();
        }

        if (wantStatus > oldStatus && !AllocateFrames(d.StatusFrames, oldStatus, wantStatus))
        {
            FreeFrames(d.SharedFrames, oldShared, frames);
            return XenErrno.ENOMEM.Negated();
        }

        // The status frames first: a client sharing from the table without the lock (a frontend, as a guest would) finds
        // the status frame of every entry the shared count covers.
        d.StatusFrameCount = Math.Max(oldStatus, wantStatus);
        d.SharedFrameCount = Math.Max(oldShared, frames);
        // The active entries double (capped at the limit) rather than growing by the frames asked: a guest growing its
        // table a frame at a time up to its limit makes the host copy them some log2(frames) times, not once per frame.
        int entries = d.SharedFrameCount * GrantEntryV1.PerFrame; // v1 has the most entries per frame
        if (d.Active.Length < entries)
        {
            int most = d.Limits.MaxGrantFrames * GrantEntryV1.PerFrame;
            Array.Resize(ref d.Active, Math.Min(Math.Max(entries, 2 * d.Active.Length), most));
        }

        return 0;
    }

    private bool AllocateFrames(MachineFrameNumber[] frames, int from, int to)
    {
        for (int i = from; i < to; i++)
        {
            if (!_memory.TryAllocateFrame(FrameOwner.Hypervisor, out frames[i]))
            {
                FreeFrames(frames, from, i);
                return false;
            }
        }

        return true;
    }

    private void FreeFrames(MachineFrameNumber[] frames, int from, int to)
    {
        for (int i = from; i < to; i++)
        {
            Frames.Free(frames[i]);
        }
    }

    /// <summary>
    /// <c>GNTTABOP_setup_table</c>: grows domain <paramref name="dom"/>'s table to at least <paramref name="frameCount"/>
    /// frames and reports, per frame, the guest frame it is mapped at (<see cref="InvalidFrame"/> when not mapped),
    /// as Xen does for translated guests.
    /// </summary>
    /// <param name="caller">The calling domain.</param>
    /// <param name="privileged">True when the caller may act on other domains (Xen's XSM_TARGET check).</param>
    /// <param name="dom">The target (<c>DOMID_SELF</c> allowed).</param>
    /// <param name="frameCount">Requested frames.</param>
    /// <param name="frames">Receives <paramref name="frameCount"/> frame numbers; at least that long.</param>
    /// <returns>The operation's status.</returns>
    public GrantStatus SetupTable(GrantDomain caller, bool privileged, ushort dom, uint frameCount, Span<ulong> frames)
    {
        CheckCaller(caller);
        using (Exclusive())
        {
            GrantStatus rc = ResolveTarget(caller, privileged, dom, out GrantDomain d);
            if (rc != GrantStatus.Okay)
            {
                return rc;
            }

            if (frameCount > (uint)d.Limits.MaxGrantFrames || frameCount > (uint)frames.Length)
            {
                return GrantStatus.GeneralError;
            }

            int n = (int)frameCount;
            if ((n > d.SharedFrameCount || (d.Version == 2 && GrantDomain.StatusFramesFor(n) > d.StatusFrameCount)) && GrowTable(d, n) != 0)
            {
                return GrantStatus.GeneralError;
            }

            for (int i = 0; i < n; i++)
            {
                frames[i] = d.SharedGfns[i];
            }

            return GrantStatus.Okay;
        }
    }

    /// <summary><c>GNTTABOP_query_size</c>: fills <c>NrFrames</c>, <c>MaxNrFrames</c> and <c>Status</c>.</summary>
    /// <param name="caller">The calling domain.</param>
    /// <param name="privileged">True when the caller may query other domains.</param>
    /// <param name="op">The operation.</param>
    public void QuerySize(GrantDomain caller, bool privileged, ref GnttabQuerySize op)
    {
        CheckCaller(caller);
        using (Exclusive())
        {
            GrantStatus rc = ResolveTarget(caller, privileged, op.Dom, out GrantDomain d);
            op.Status = (short)rc;
            if (rc == GrantStatus.Okay)
            {
                op.NrFrames = (uint)d.SharedFrameCount;
                op.MaxNrFrames = (uint)d.Limits.MaxGrantFrames;
            }
        }
    }

    /// <summary><c>GNTTABOP_get_version</c>: the version of domain <c>op.Dom</c>'s table.</summary>
    /// <param name="caller">The calling domain.</param>
    /// <param name="privileged">True when the caller may query other domains.</param>
    /// <param name="op">The operation; <c>Version</c> is set on success.</param>
    /// <returns>0, -ESRCH for no such domain, -EPERM for another domain without privilege.</returns>
    public long GetVersion(GrantDomain caller, bool privileged, ref GnttabGetVersion op)
    {
        CheckCaller(caller);
        using (Exclusive())
        {
            GrantStatus rc = ResolveTarget(caller, privileged, op.Dom, out GrantDomain d);
            if (rc == GrantStatus.BadDomain)
            {
                return XenErrno.ESRCH.Negated();
            }

            if (rc != GrantStatus.Okay)
            {
                return XenErrno.EPERM.Negated();
            }

            op.Version = (uint)d.Version;
            return 0;
        }
    }

    /// <summary>
    /// <c>GNTTABOP_set_version</c> for the caller's own table, with Xen's rules: only 1 or 2 (-EINVAL); not above the
    /// domain's <see cref="GrantTableLimits.MaxVersion"/> (-ENOSYS, as before Xen had set_version); no grant beyond the
    /// first 8 (reserved) may be in use (-EBUSY); v2 to v1 needs the reserved entries representable in v1 (-ERANGE). The
    /// reserved entries survive the switch, everything else is cleared; switching to v1 removes the status frames from
    /// the guest's physical address space and frees them. <c>op.Version</c> is set to the version in force.
    /// </summary>
    /// <param name="caller">The calling domain.</param>
    /// <param name="op">The operation.</param>
    /// <returns>0 or a negated errno.</returns>
    public long SetVersion(GrantDomain caller, ref GnttabSetVersion op)
    {
        CheckCaller(caller);
        using (Exclusive())
        {
            long rc = SetVersionLocked(caller, op.Version);
            op.Version = (uint)caller.Version;
            return rc;
        }
    }

    private long SetVersionLocked(GrantDomain d, uint version)
    {
        if (version is not (1 or 2) || d.IsDestroyed)
        {
            return XenErrno.EINVAL.Negated();
        }

        // gnttab_set_version (Xen 4.16+): version 2 for a domain whose gt->max_version is 1 is -ENOSYS.
        if (version > (uint)d.Limits.MaxVersion)
        {
            return XenErrno.ENOSYS.Negated();
        }

        if (d.Version == (int)version)
        {
            return 0;
        }

        for (int i = ReservedEntries; i < d.EntryCount; i++)
        {
            if (d.Active[i].Pin != 0)
            {
                return XenErrno.EBUSY.Negated();
            }
        }

        if (d.Version == 2)
        {
            for (uint i = 0; i < ReservedEntries; i++)
            {
                GrantEntryV2* e = EntryV2(d, i);
                var type = (GrantEntryFlags)(e->Flags & (ushort)GrantEntryFlags.TypeMask);
                if ((type == GrantEntryFlags.PermitAccess && (e->Frame >> 32) != 0) || type == GrantEntryFlags.Transitive)
                {
                    return XenErrno.ERANGE.Negated(); // not representable in a v1 entry
                }
            }
        }
        else if (version == 2 && GrowStatus(d) != 0)
        {
            return XenErrno.ENOMEM.Negated();
        }

        // Preserve the first 8 entries (toolstack reserved grants: console, xenstore) in v1 form with their status bits.
        Span<GrantEntryV1> reserved = stackalloc GrantEntryV1[ReservedEntries];
        for (uint i = 0; i < ReservedEntries; i++)
        {
            if (d.Version == 1)
            {
                reserved[(int)i] = *EntryV1(d, i);
            }
            else
            {
                GrantEntryV2* e = EntryV2(d, i);
                if ((e->Flags & (ushort)GrantEntryFlags.TypeMask) == (ushort)GrantEntryFlags.PermitAccess)
                {
                    uint* status = StatusWord(d, i, out int shift);
                    reserved[(int)i] = new GrantEntryV1 { Flags = (ushort)(e->Flags | (ushort)(*status >> shift)), DomId = e->DomId, Frame = (uint)e->Frame };
                }
            }
        }

        if (version == 1)
        {
            // XSA-379: the status frames leave the guest's physical address space, and its processors' caches, before
            // they are freed.
            for (int i = 0; i < d.StatusFrameCount; i++)
            {
                UnmapTableFrame(d, status: true, i);
            }

            GuestPhysicalMemory.InvalidateSingleContext(_memory, d.Ept.Pointer);
            FlushBeforeRelease(d);
            for (int i = 0; i < d.StatusFrameCount; i++)
            {
                Frames.Free(d.StatusFrames[i]);
            }

            d.StatusFrameCount = 0;
        }

        for (int i = 0; i < d.SharedFrameCount; i++)
        {
            _memory.GetFrame(d.SharedFrames[i]).Clear();
        }

        d.Version = (int)version;
        for (uint i = 0; i < ReservedEntries; i++)
        {
            GrantEntryV1 r = reserved[(int)i];
            if (version == 1)
            {
                *EntryV1(d, i) = r;
            }
            else
            {
                GrantEntryV2* e = EntryV2(d, i);
                e->Flags = (ushort)(r.Flags & ~(ushort)(GrantEntryFlags.Reading | GrantEntryFlags.Writing));
                e->DomId = r.DomId;
                e->Frame = r.Frame;
                uint* status = StatusWord(d, i, out int shift);
                ClearBits16(status, shift, 0xFFFF);
                SetBits16(status, shift, (ushort)(r.Flags & (ushort)(GrantEntryFlags.Reading | GrantEntryFlags.Writing)));
            }
        }

        return 0;
    }

    /// <summary>Shared frames whose v2 entries the <paramref name="statusFrames"/> status frames cover (<c>status_to_grant_frames</c>).</summary>
    private static long GrantFramesForStatus(long statusFrames) =>
        ((statusFrames * GrantEntryV2.StatusPerFrame) + GrantEntryV2.PerFrame - 1) / GrantEntryV2.PerFrame;

    private long GrowStatus(GrantDomain d)
    {
        int want = GrantDomain.StatusFramesFor(d.SharedFrameCount);
        if (want > d.StatusFrameCount)
        {
            if (!AllocateFrames(d.StatusFrames, d.StatusFrameCount, want))
            {
                return XenErrno.ENOMEM.Negated();
            }

            d.StatusFrameCount = want;
        }

        return 0;
    }

    /// <summary>
    /// <c>GNTTABOP_get_status_frames</c>: reports where the v2 status frames of domain <paramref name="dom"/> are mapped.
    /// <paramref name="frameCount"/> may not exceed the status frames the table has, nor the room in
    /// <paramref name="frames"/> (the XSA-382 bound). Xen does not offer this command to HVM guests through the hypercall.
    /// </summary>
    /// <param name="caller">The calling domain.</param>
    /// <param name="privileged">True when the caller may act on other domains.</param>
    /// <param name="dom">The target (<c>DOMID_SELF</c> allowed).</param>
    /// <param name="frameCount">Requested frames.</param>
    /// <param name="frames">Receives the frame numbers.</param>
    /// <returns>The operation's status.</returns>
    public GrantStatus GetStatusFrames(GrantDomain caller, bool privileged, ushort dom, uint frameCount, Span<ulong> frames)
    {
        CheckCaller(caller);
        using (Exclusive())
        {
            GrantStatus rc = ResolveTarget(caller, privileged, dom, out GrantDomain d);
            if (rc != GrantStatus.Okay)
            {
                return rc;
            }

            if (frameCount > (uint)d.StatusFrameCount || frameCount > (uint)frames.Length)
            {
                return GrantStatus.GeneralError;
            }

            for (int i = 0; i < (int)frameCount; i++)
            {
                frames[i] = d.StatusGfns[i];
            }

            return GrantStatus.Okay;
        }
    }

    /// <summary>One operation of <c>GNTTABOP_swap_grant_ref</c> on the caller's own table; sets <c>op.Status</c>.</summary>
    /// <param name="caller">The calling domain.</param>
    /// <param name="op">The operation.</param>
    public void SwapGrantRef(GrantDomain caller, ref GnttabSwapGrantRef op)
    {
        CheckCaller(caller);
        using (Exclusive())
        {
            op.Status = (short)Swap(caller, op.RefA, op.RefB);
        }
    }

    private GrantStatus Swap(GrantDomain d, uint a, uint b)
    {
        if (d.IsDestroyed || a >= (uint)d.EntryCount || b >= (uint)d.EntryCount)
        {
            return GrantStatus.BadGntref;
        }

        if (a == b)
        {
            return GrantStatus.Okay;
        }

        if (d.Active[a].Pin != 0 || d.Active[b].Pin != 0)
        {
            return GrantStatus.Eagain; // "ref busy"
        }

        if (d.Version == 1)
        {
            (*EntryV1(d, a), *EntryV1(d, b)) = (*EntryV1(d, b), *EntryV1(d, a));
        }
        else
        {
            (*EntryV2(d, a), *EntryV2(d, b)) = (*EntryV2(d, b), *EntryV2(d, a));
            uint* wa = StatusWord(d, a, out int sa);
            uint* wb = StatusWord(d, b, out int sb);
            ushort va = (ushort)(*wa >> sa), vb = (ushort)(*wb >> sb);
            ClearBits16(wa, sa, 0xFFFF);
            SetBits16(wa, sa, vb);
            ClearBits16(wb, sb, 0xFFFF);
            SetBits16(wb, sb, va);
        }

        return GrantStatus.Okay;
    }

    /// <summary>
    /// <c>XENMEM_add_to_physmap</c> with <c>XENMAPSPACE_grant_table</c> (Xen's <c>gnttab_map_frame</c> and
    /// <c>xenmem_add_to_physmap_one</c>): places shared frame <c>(uint)index</c> (Xen 4.17's
    /// <c>gnttab_get_shared_frame_mfn</c> takes an unsigned int), or, when bit 31
    /// (<c>XENMAPIDX_grant_table_status</c>) is set, status frame <c>index &amp; 0x7FFFFFFF</c> (Xen's
    /// <c>idx &amp; ~XENMAPIDX_grant_table_status</c>, an unsigned int mask), at guest frame <paramref name="gpfn"/>
    /// of <paramref name="caller"/>'s EPT. An index past the shared or status frames grows the table (up to the limit,
    /// status frame <c>i</c> needing <c>status_to_grant_frames(i + 1)</c> shared frames); the frame
    /// leaves its previous guest frame; a RAM page of the domain at <paramref name="gpfn"/> is released, as Xen
    /// releases it, and a page of another domain there (a foreign mapping) is refused, as Xen refuses it. The
    /// hypervisor's <c>XENMEM_add_to_physmap</c> handler calls this for that space.
    /// </summary>
    /// <param name="caller">The domain.</param>
    /// <param name="index">The frame index (<c>xen_add_to_physmap.idx</c>).</param>
    /// <param name="gpfn">Where to place it (<c>xen_add_to_physmap.gpfn</c>).</param>
    /// <returns>
    /// 0; -EINVAL (an index past the frames the table has or can grow to, a status frame under v1, or the growth
    /// failed); -ENXIO (the slot holds a grant mapping, or another domain's page such as a foreign mapping); -ENOMEM
    /// (the EPT could not map it).
    /// </returns>
    public long AddToPhysmap(GrantDomain caller, ulong index, GuestFrameNumber gpfn)
    {
        CheckCaller(caller);
        using (Exclusive())
        {
            GrantDomain d = caller;
            if (d.IsDestroyed || gpfn.Value >= MaxGuestFrame)
            {
                return XenErrno.EINVAL.Negated();
            }

            long rc = TableFrameIndex(d, index, out bool status, out int i);
            if (rc != 0)
            {
                return rc;
            }

            ulong[] gfns = status ? d.StatusGfns : d.SharedGfns;
            MachineFrameNumber frame = status ? d.StatusFrames[i] : d.SharedFrames[i];
            if (gfns[i] == gpfn.Value)
            {
                return 0;
            }

            // xenmem_add_to_physmap_one: the slot's previous page is not special, so guest_remove_page runs on it, and
            // get_page(page, d) fails on a granter's page: -ENXIO.
            if (d.GrantMappedGfns.ContainsKey(gpfn.Value))
            {
                return XenErrno.ENXIO.Negated();
            }

            // Whatever the slot held goes: another table frame moves out, the domain's own RAM page is released.
            if (d.TableGfns.TryGetValue(gpfn.Value, out (bool Status, int Index) other))
            {
                UnmapTableFrame(d, other.Status, other.Index);
            }
            else if (d.Ept.TryLookup(gpfn, out MachineFrameNumber old, out _))
            {
                // guest_remove_page: get_page(page, d) fails on another domain's page (a control domain's foreign
                // mapping): -ENXIO with the slot unchanged (the table has grown, as Xen's gnttab_map_frame runs first). A
                // hypervisor page is special and only unhooked.
                if (_memory.TryGetOwner(old, out FrameOwner slotOwner) && slotOwner.DomainId != d.Id &&
                    slotOwner != FrameOwner.Hypervisor)
                {
                    return XenErrno.ENXIO.Negated();
                }

                try
                {
                    d.Ept.Unmap(gpfn.Address, 1);
                }
                catch (MachineMemoryExhaustedException)
                {
                    // The slot lies in a large page and no frame is left to split it (p2m_set_entry: -ENOMEM); nothing
                    // has changed yet.
                    return XenErrno.ENOMEM.Negated();
                }

                if (_memory.TryGetOwner(old, out FrameOwner owner) && owner.DomainId == d.Id && !Frames.IsFreePending(old))
                {
                    GuestPhysicalMemory.InvalidateSingleContext(_memory, d.Ept.Pointer);
                    FlushBeforeRelease(d);
                    Frames.Free(old);
                }
            }

            UnmapTableFrame(d, status, i);
            try
            {
                d.Ept.Map(gpfn.Address, frame, 1, EptAccess.Read | EptAccess.Write);
            }
            catch (MachineMemoryExhaustedException)
            {
                GuestPhysicalMemory.InvalidateSingleContext(_memory, d.Ept.Pointer);
                return XenErrno.ENOMEM.Negated();
            }

            gfns[i] = gpfn.Value;
            d.TableGfns[gpfn.Value] = (status, i);
            GuestPhysicalMemory.InvalidateSingleContext(_memory, d.Ept.Pointer);
            return 0;
        }
    }

    /// <summary>
    /// Xen's <c>gnttab_map_frame</c>, the first step of <c>XENMEM_add_to_physmap</c> with <c>XENMAPSPACE_grant_table</c>:
    /// the machine frame of shared frame <c>(uint)index</c>, or of status frame <c>index &amp; 0x7FFFFFFF</c>
    /// when bit 31 (<c>XENMAPIDX_grant_table_status</c>) is set, growing the table as
    /// <see cref="AddToPhysmap"/> does. A hypervisor that keeps its own record of the slot's page calls this first, so
    /// that a refused index changes nothing, then removes that page, then calls <see cref="AddToPhysmap"/>.
    /// </summary>
    /// <param name="domain">The domain.</param>
    /// <param name="index">The frame index (<c>xen_add_to_physmap.idx</c>).</param>
    /// <param name="frame">The table frame on success.</param>
    /// <returns>0, or -EINVAL as <see cref="AddToPhysmap"/>.</returns>
    public long GetTableFrame(GrantDomain domain, ulong index, out MachineFrameNumber frame)
    {
        CheckCaller(domain);
        frame = default;
        using (Exclusive())
        {
            if (domain.IsDestroyed)
            {
                return XenErrno.EINVAL.Negated();
            }

            long rc = TableFrameIndex(domain, index, out bool status, out int i);
            if (rc == 0)
            {
                frame = status ? domain.StatusFrames[i] : domain.SharedFrames[i];
            }

            return rc;
        }
    }

    // gnttab_map_frame's checks, growing the table to make the index valid; under the lock.
    private long TableFrameIndex(GrantDomain d, ulong index, out bool status, out int i)
    {
        i = 0;

        // gnttab_map_frame: the status bit names a status frame under v2 only; under v1 the index keeps the bit and
        // is past every shared frame (gnttab_get_shared_frame_mfn: -EINVAL). A status index is
        // idx & ~XENMAPIDX_grant_table_status with the constant an unsigned int: bits 31 to 63 all go. A shared
        // index goes to gnttab_get_shared_frame_mfn as an unsigned int (Xen 4.17): bits 32 to 63 go.
        status = (index & GrantTableStatusIndex) != 0;
        ulong idx = status ? index & (GrantTableStatusIndex - 1) : (uint)index;
        if (status && d.Version != 2)
        {
            return XenErrno.EINVAL.Negated();
        }

        // gnttab_get_status_frame_mfn / gnttab_get_shared_frame_mfn: an index past the frames grows the table to
        // make it valid (status_to_grant_frames(idx + 1) or idx + 1 shared frames) when that is within
        // max_grant_frames; if the index is still past the frames (no room, or the growth failed), -EINVAL.
        if (idx >= (ulong)(status ? d.StatusFrameCount : d.SharedFrameCount))
        {
            if (idx >= (ulong)d.Limits.MaxGrantFrames) // a status frame needs at least as many shared frames
            {
                return XenErrno.EINVAL.Negated();
            }

            long frames = status ? GrantFramesForStatus((long)idx + 1) : (long)idx + 1;
            if (frames <= d.Limits.MaxGrantFrames)
            {
                _ = GrowTable(d, (int)frames); // a failure shows in the check below, as in Xen
            }

            if (idx >= (ulong)(status ? d.StatusFrameCount : d.SharedFrameCount))
            {
                return XenErrno.EINVAL.Negated();
            }
        }

        i = (int)idx;
        return 0;
    }

    /// <summary>Removes table frame <paramref name="index"/> from the guest frame it was placed at, if any.</summary>
    private void UnmapTableFrame(GrantDomain d, bool status, int index)
    {
        ulong[] gfns = status ? d.StatusGfns : d.SharedGfns;
        ulong gfn = gfns[index];
        if (gfn == GrantDomain.InvalidGfn)
        {
            return;
        }

        gfns[index] = GrantDomain.InvalidGfn;
        d.TableGfns.Remove(gfn);
        try
        {
            d.Ept.Unmap(new GuestFrameNumber(gfn).Address, 1);
        }
        catch (ObjectDisposedException)
        {
            // The hypervisor already disposed a dying domain's EPT.
        }

        GuestPhysicalMemory.InvalidateSingleContext(_memory, d.Ept.Pointer);
    }

    /// <summary>Finds the target of a table query (<c>rcu_lock_domain_by_any_id</c>, then Xen's XSM_TARGET check).</summary>
    private GrantStatus ResolveTarget(GrantDomain caller, bool privileged, ushort dom, out GrantDomain target)
    {
        target = LookupByAnyId(caller, dom)!;
        if (target is null || caller.IsDestroyed)
        {
            return GrantStatus.BadDomain;
        }

        return ReferenceEquals(target, caller) || privileged ? GrantStatus.Okay : GrantStatus.PermissionDenied;
    }
}
