using System.Diagnostics;
using System.Runtime.CompilerServices;
using VmmKit.Ept;

namespace VmmKit.GrantTable;

// GNTTABOP_map_grant_ref, unmap_grant_ref and unmap_and_replace for HVM/PVH grantees
// (grant_table.c: map_grant_ref, unmap_common, unmap_common_complete; x86 create/replace_grant_p2m_mapping).
public sealed unsafe partial class GrantTableHost
{
    /// <summary>
    /// Maps grant <c>op.Ref</c> of domain <c>op.Dom</c> into <paramref name="caller"/>'s EPT at guest-physical
    /// <c>op.HostAddr</c> (one operation of <c>GNTTABOP_map_grant_ref</c>); sets <c>op.Status</c>, and on success
    /// <c>op.Handle</c> and <c>op.DevBusAddr</c>.
    /// </summary>
    /// <param name="caller">The grantee.</param>
    /// <param name="op">The operation, as read from the guest.</param>
    public void MapGrantRef(GrantDomain caller, ref GnttabMapGrantRef op)
    {
        CheckCaller(caller);
        using (Exclusive())
        {
            op.Status = (short)Map(caller, ref op);
        }
    }

    private GrantStatus Map(GrantDomain ld, ref GnttabMapGrantRef op)
    {
        var flags = (GrantMapFlags)op.Flags;
        if ((flags & (GrantMapFlags.DeviceMap | GrantMapFlags.HostMap)) == 0)
        {
            return GrantStatus.BadGntref; // "Bad flags in grant map op"
        }

        if ((flags & (GrantMapFlags.DeviceMap | GrantMapFlags.ApplicationMap | GrantMapFlags.ContainsPte)) != 0)
        {
            return GrantStatus.GeneralError; // "No device mapping in HVM domain"
        }

        if (ld.IsDestroyed || ld.IsDying || LookupById(op.Dom) is not { } rd)
        {
            return GrantStatus.BadDomain;
        }

        if (!TryGetMaptrackHandle(ld, out uint handle))
        {
            return GrantStatus.NoSpace; // "Failed to obtain maptrack handle"
        }

        GrantStatus rc = MapPinned(ld, rd, ref op, flags, handle);
        if (rc != GrantStatus.Okay)
        {
            PutMaptrackHandle(ld, handle);
        }

        return rc;
    }

    private GrantStatus MapPinned(GrantDomain ld, GrantDomain rd, ref GnttabMapGrantRef op, GrantMapFlags flags, uint handle)
    {
        if (op.Ref >= (uint)rd.EntryCount)
        {
            return GrantStatus.BadGntref;
        }

        bool readOnly = (flags & GrantMapFlags.ReadOnly) != 0;
        uint increment = readOnly ? ActiveGrantEntry.HostReadIncrement : ActiveGrantEntry.HostWriteIncrement;
        ref ActiveGrantEntry act = ref rd.Active[op.Ref];

        // map_grant_ref: other grantee, risk of overflow of the counter this map increments (Xen 4.17's
        // GNTPIN_incr2oflow_mask(pin_incr): 128 writable mappings do not stop a read-only one), or sub-page.
        if (act.Pin != 0 && (act.DomId != ld.Id || (act.Pin & ActiveGrantEntry.OverflowMask(increment)) != 0 || act.IsSubPage))
        {
            return GrantStatus.GeneralError;
        }

        // map_grant_ref: a pinned entry's frame is used only while the granter still owns it
        // (page_get_owner_and_reference; every pin holds a reference on it, so it cannot have been freed meanwhile).
        if (act.Pin != 0 && (!_memory.TryGetOwner(new MachineFrameNumber(act.Mfn), out FrameOwner owner) || owner.DomainId != rd.Id))
        {
            return GrantStatus.GeneralError;
        }

        uint writers = ActiveGrantEntry.HostWriteMask | ActiveGrantEntry.DeviceWriteMask;
        if (act.Pin == 0 || (!readOnly && (act.Pin & writers) == 0))
        {
            GrantStatus rc = SetStatus(rd, op.Ref, HeaderWord(rd, op.Ref), act, readOnly, mapping: true, ld.Id);
            if (rc != GrantStatus.Okay)
            {
                return rc;
            }

            if (act.Pin == 0)
            {
                ulong gfn = rd.Version == 1 ? EntryV1(rd, op.Ref)->Frame : Volatile.Read(ref EntryV2(rd, op.Ref)->Frame);
                rc = GetPagedFrame(rd, gfn, readOnly, out ulong mfn);
                if (rc != GrantStatus.Okay)
                {
                    ClearAfterFailedPin(rd, op.Ref, act.Pin, readOnly);
                    return rc;
                }

                act.DomId = ld.Id;
                act.Mfn = mfn;
                act.Gfn = gfn;
                act.Start = 0;
                act.Length = Page.PageSize;
                act.IsSubPage = false;
            }
        }

        act.Pin += increment;
        var frame = new MachineFrameNumber(act.Mfn);

        // create_grant_p2m_mapping: the granted frame appears at host_addr in the grantee's EPT, never executable; any
        // flag but GNTMAP_host_map and GNTMAP_readonly is refused there, after the pin (map_grant_ref's undo_out). The
        // entry's cache attributes (GTF_PWT, GTF_PCD, GTF_PAT) are ignored: map_grant_ref passes them on only for I/O
        // memory, and every frame a grant names here is RAM of its granter.
        ulong target = op.HostAddr >> Page.PageShift;
        GrantStatus mapped = (flags & ~(GrantMapFlags.HostMap | GrantMapFlags.ReadOnly)) != 0
            ? GrantStatus.GeneralError
            : AddHostMapping(ld, target, frame, readOnly);
        if (mapped != GrantStatus.Okay)
        {
            act.Pin -= increment;
            ClearAfterFailedPin(rd, op.Ref, act.Pin, readOnly);
            return mapped;
        }

        Frames.AcquireHeld(frame.Value); // a frame just resolved, or one the entry's pins already hold
        ref MaptrackEntry mt = ref ld.Maptrack[handle];
        mt.Ref = op.Ref;
        mt.Granter = rd;
        mt.Gfn = target;
        mt.Mfn = frame.Value;
        mt.Flags = flags & (GrantMapFlags.HostMap | GrantMapFlags.ReadOnly);
        ld.GrantMappedGfns[target] = handle;

        op.DevBusAddr = frame.Address;
        op.Handle = handle;
        return GrantStatus.Okay;
    }

    private void ClearAfterFailedPin(GrantDomain rd, uint gref, uint pin, bool readOnly) =>
        ClearStatusFlags(rd, gref, FlagsToClear(pin, readOnly));

    // What an unpin leaves to clear: GTF_writing once no writable pin is left, GTF_reading once no pin at all.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static GrantEntryFlags FlagsToClear(uint pin, bool readOnly)
    {
        GrantEntryFlags clear = 0;
        if (!readOnly && (pin & (ActiveGrantEntry.HostWriteMask | ActiveGrantEntry.DeviceWriteMask)) == 0)
        {
            clear |= GrantEntryFlags.Writing;
        }

        if (pin == 0)
        {
            clear |= GrantEntryFlags.Reading;
        }

        return clear;
    }

    private GrantStatus AddHostMapping(GrantDomain ld, ulong gfn, MachineFrameNumber frame, bool readOnly)
    {
        // Refuse a slot that already holds a grant mapping or one of the grantee's grant-table frames:
        // replacing them would orphan a maptrack entry or a table frame.
        if (gfn >= MaxGuestFrame || ld.GrantMappedGfns.ContainsKey(gfn) || ld.TableGfns.ContainsKey(gfn))
        {
            return GrantStatus.GeneralError;
        }

        bool replaces;
        try
        {
            replaces = ld.Ept.TryLookup(new GuestFrameNumber(gfn), out MachineFrameNumber old, out _); // a RAM page a vCPU may have cached

            // guest_physmap_add_entry will not replace a foreign entry (domain_crash, -EINVAL): another domain's page at
            // the slot is a mapping the hypervisor made and keeps a record and a reference of. The grantee's own RAM and
            // a hypervisor page (shared_info) are replaced.
            if (replaces && _memory.TryGetOwner(old, out FrameOwner owner) && owner.DomainId != ld.Id && owner != FrameOwner.Hypervisor)
            {
                return GrantStatus.GeneralError;
            }

            ld.Ept.Map(new GuestFrameNumber(gfn).Address, frame, 1, readOnly ? EptAccess.Read : EptAccess.Read | EptAccess.Write);
        }
        catch (Exception e) when (e is MachineMemoryExhaustedException or ObjectDisposedException)
        {
            // No table page for the entry, or the hypervisor disposed the grantee's EPT before DestroyDomain (the wrong
            // order): create_grant_p2m_mapping fails, and the caller undoes the pin as map_grant_ref's undo_out.
            return GrantStatus.GeneralError;
        }

        GuestPhysicalMemory.InvalidateSingleContext(_memory, ld.Ept.Pointer);
        if (replaces)
        {
            FlushTranslations?.Invoke(ld); // as Xen's p2m update flushes when it replaces a present entry
        }

        return GrantStatus.Okay;
    }

    // The first half of an unmap: the mapping leaves the grantee's EPT and the host's cache of its translations. The
    // vCPUs' translations go at the flush that follows (FlushBeforeRelease), once for a whole batch, before the page's
    // reference is released (CompleteUnmap).
    private void RemoveHostMapping(GrantDomain ld, ulong gfn)
    {
        ld.GrantMappedGfns.Remove(gfn);
        try
        {
            ld.Ept.Unmap(new GuestFrameNumber(gfn).Address, 1);
        }
        catch (ObjectDisposedException)
        {
            // The hypervisor already disposed the dying domain's EPT: nothing left to unmap.
        }

        GuestPhysicalMemory.InvalidateSingleContext(_memory, ld.Ept.Pointer);
    }

    /// <summary>Unmaps one grant mapping (one operation of <c>GNTTABOP_unmap_grant_ref</c>); sets <c>op.Status</c>.</summary>
    /// <param name="caller">The grantee.</param>
    /// <param name="op">The operation, as read from the guest.</param>
    public void UnmapGrantRef(GrantDomain caller, ref GnttabUnmapGrantRef op)
    {
        CheckCaller(caller);
        using (Exclusive())
        {
            PendingUnmap pending = default;
            op.Status = (short)UnmapBegin(caller, op.Handle, op.HostAddr, newAddr: 0, ref pending);
            UnmapComplete(caller, new ReadOnlySpan<PendingUnmap>(in pending));
        }
    }

    /// <summary>
    /// Unmaps grant mappings as <c>GNTTABOP_unmap_grant_ref</c> does with an array of operations: in batches of up to
    /// 32 (<c>GNTTAB_UNMAP_BATCH_SIZE</c>), each batch's mappings leave the EPT, then <see cref="FlushTranslations"/>
    /// runs once, then each one's pin, status flags and frame reference are dropped. Sets every <c>Status</c>;
    /// operations run in order, so one that names a handle an earlier operation unmapped gets <c>GNTST_bad_handle</c>.
    /// </summary>
    /// <param name="caller">The grantee.</param>
    /// <param name="ops">The operations.</param>
    public void UnmapGrantRefs(GrantDomain caller, Span<GnttabUnmapGrantRef> ops)
    {
        CheckCaller(caller);
        while (!ops.IsEmpty)
        {
            int n = Math.Min(ops.Length, UnmapBatchSize);
            using (Exclusive())
            {
                PendingUnmaps pending = default;
                try
                {
                    for (int i = 0; i < n; i++)
                    {
                        ref GnttabUnmapGrantRef op = ref ops[i];
                        op.Status = (short)UnmapBegin(caller, op.Handle, op.HostAddr, newAddr: 0, ref pending[i]);
                    }
                }
                finally
                {
                    UnmapComplete(caller, ((ReadOnlySpan<PendingUnmap>)pending)[..n]);
                }
            }

            ops = ops[n..];
        }
    }

    /// <summary>
    /// One operation of <c>GNTTABOP_unmap_and_replace</c>: for an HVM grantee only <c>new_addr</c> = 0 is accepted
    /// (then it is an unmap), as in Xen's <c>replace_grant_p2m_mapping</c>. Xen does not offer this command to HVM
    /// guests through the hypercall; the method exists for hosts that do.
    /// </summary>
    /// <param name="caller">The grantee.</param>
    /// <param name="op">The operation.</param>
    public void UnmapAndReplace(GrantDomain caller, ref GnttabUnmapAndReplace op)
    {
        CheckCaller(caller);
        using (Exclusive())
        {
            PendingUnmap pending = default;
            op.Status = (short)UnmapBegin(caller, op.Handle, op.HostAddr, op.NewAddr, ref pending);
            UnmapComplete(caller, new ReadOnlySpan<PendingUnmap>(in pending));
        }
    }

    /// <summary>The first half of one operation of a batch of unmaps, with the exclusive lock held.</summary>
    internal GrantStatus UnmapBeginHeld(GrantDomain caller, in GnttabUnmapGrantRef op, ref PendingUnmap pending)
    {
        Debug.Assert(HoldsExclusive, "UnmapBeginHeld runs under the exclusive lock");
        return UnmapBegin(caller, op.Handle, op.HostAddr, newAddr: 0, ref pending);
    }

    /// <summary>The end of a batch of unmaps begun with <see cref="UnmapBeginHeld"/>, with the exclusive lock held.</summary>
    internal void UnmapCompleteHeld(GrantDomain caller, in PendingUnmaps pending, int count)
    {
        Debug.Assert(HoldsExclusive, "UnmapCompleteHeld runs under the exclusive lock");
        UnmapComplete(caller, ((ReadOnlySpan<PendingUnmap>)pending)[..count]);
    }

    // unmap_common: checks the handle and the address, takes the mapping out of the EPT and frees the handle (a second
    // operation on it in the same batch finds it unmapped, XSA-218); what unmap_common_complete needs goes to
    // `pending`, which UnmapComplete finishes after the batch's flush. Under the lock.
    private GrantStatus UnmapBegin(GrantDomain ld, uint handle, ulong hostAddr, ulong newAddr, ref PendingUnmap pending)
    {
        if (handle >= (uint)ld.MaptrackLimit || ld.IsDestroyed)
        {
            return GrantStatus.BadHandle;
        }

        ref MaptrackEntry map = ref ld.Maptrack[handle];
        GrantMapFlags flags = map.Flags;
        if (flags == 0)
        {
            return GrantStatus.BadHandle; // never mapped, or already unmapped
        }

        // unmap_common compares dev_bus_addr with the frame only for a GNTMAP_device_map mapping, which an HVM grantee
        // never has: here it changes nothing (Xen 4.17), the handle and host_addr decide.
        var frame = new MachineFrameNumber(map.Mfn);
        if (hostAddr == 0 || (flags & GrantMapFlags.HostMap) == 0)
        {
            // Nothing asked to be undone (Xen leaves the mapping as it is), yet GNTST_okay: unmap_common's
            // gnttab_mark_dirty(rd, op->mfn) runs for a writable mapping all the same, the grantee may have written it.
            MarkUnmapped(map.Granter!, map.Ref, flags);
            return GrantStatus.Okay;
        }

        // replace_grant_p2m_mapping: no replacement for HVM, and the address must hold this very mapping.
        ulong gfn = hostAddr >> Page.PageShift;
        if (newAddr != 0 || !ld.GrantMappedGfns.TryGetValue(gfn, out uint mappedHandle) || mappedHandle != handle)
        {
            return GrantStatus.GeneralError;
        }

        RemoveHostMapping(ld, gfn);
        pending = new PendingUnmap(map.Granter!, map.Ref, flags, frame);
        map.Flags = GrantMapFlags.None;
        map.Granter = null;
        PutMaptrackHandle(ld, handle);
        return GrantStatus.Okay;
    }

    // The end of a batch of unmaps of ld (some entries empty: operations that removed no mapping): gnttab_flush_tlb
    // once if any mapping left the EPT, then unmap_common_complete for each. Under the lock.
    private void UnmapComplete(GrantDomain ld, ReadOnlySpan<PendingUnmap> pending)
    {
        bool any = false;
        foreach (ref readonly PendingUnmap p in pending)
        {
            any |= p.Granter is not null;
        }

        if (!any)
        {
            return;
        }

        FlushBeforeRelease(ld);
        foreach (ref readonly PendingUnmap p in pending)
        {
            if (p.Granter is not null)
            {
                MarkUnmapped(p.Granter, p.Ref, p.Flags);
                CompleteUnmap(p.Granter, p.Ref, p.Flags, p.Frame);
            }
        }
    }

    // unmap_common's gnttab_mark_dirty(rd, op->mfn) once a writable mapping is gone: the granter's frame, at the gfn the
    // grant's pin resolved it from (act->gfn; Xen finds the gfn through the M2P). Here after the flush, while the
    // mapping's pin still holds the active entry, so every write through the mapping came before the mark. (An unmap
    // that leaves the mapping in place marks at once: the mapping's pin keeps act->gfn.)
    private static void MarkUnmapped(GrantDomain rd, uint gref, GrantMapFlags flags)
    {
        if ((flags & GrantMapFlags.ReadOnly) == 0)
        {
            MarkDirty(rd, rd.Active[gref].Gfn);
        }
    }

    // unmap_common_complete: drop the frame reference and the pin, clear the status flags the last user set.
    private void CompleteUnmap(GrantDomain rd, uint gref, GrantMapFlags flags, MachineFrameNumber frame)
    {
        bool readOnly = (flags & GrantMapFlags.ReadOnly) != 0;
        ref ActiveGrantEntry act = ref rd.Active[gref];
        act.Pin -= readOnly ? ActiveGrantEntry.HostReadIncrement : ActiveGrantEntry.HostWriteIncrement;
        Frames.ReleaseHeld(frame.Value);

        GrantEntryFlags clear = 0;
        if (!readOnly && (act.Pin & (ActiveGrantEntry.HostWriteMask | ActiveGrantEntry.DeviceWriteMask)) == 0)
        {
            clear |= GrantEntryFlags.Writing;
        }

        if (act.Pin == 0)
        {
            clear |= GrantEntryFlags.Reading;
        }

        ClearStatusFlags(rd, gref, clear);
    }

    // get_maptrack_handle: a free handle, or the next frame's worth of handles once none is free, up to the domain's
    // limit. The array behind them doubles (capped at the limit) rather than growing by a frame, so a guest mapping up
    // to its limit costs the host O(1) amortised per map, not a copy of every handle so far at every frame.
    private static bool TryGetMaptrackHandle(GrantDomain ld, out uint handle)
    {
        if (ld.MaptrackFreeHead < 0)
        {
            int used = ld.MaptrackLimit;
            int limit = ld.Limits.MaxMaptrackFrames * GrantTableLimits.MaptrackPerFrame;
            if (used >= limit)
            {
                handle = 0;
                return false;
            }

            int grown = used + GrantTableLimits.MaptrackPerFrame;
            if (grown > ld.Maptrack.Length)
            {
                Array.Resize(ref ld.Maptrack, Math.Min(Math.Max(grown, 2 * ld.Maptrack.Length), limit));
            }

            for (int i = grown - 1; i >= used; i--)
            {
                ld.Maptrack[i].NextFree = ld.MaptrackFreeHead;
                ld.MaptrackFreeHead = i;
            }

            ld.MaptrackLimit = grown;
        }

        handle = (uint)ld.MaptrackFreeHead;
        ld.MaptrackFreeHead = ld.Maptrack[handle].NextFree;
        ld.Maptrack[handle].NextFree = -1;
        ld.MaptrackInUse++;
        return true;
    }

    private static void PutMaptrackHandle(GrantDomain ld, uint handle)
    {
        ld.Maptrack[handle].NextFree = ld.MaptrackFreeHead;
        ld.MaptrackFreeHead = (int)handle;
        ld.MaptrackInUse--;
    }
}
