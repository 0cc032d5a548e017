using System.Runtime.CompilerServices;
using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable;

// GNTTABOP_copy in the shape a backend uses it: a v1 grant of another domain on one side (netback's TX and blkback
// read from the frontend's grant; netback's RX writes into it) and a frame of the caller (DOMID_SELF) on the other.
// The same checks as CopyOneCore in fewer steps; anything else, and any check that fails, is left to CopyOneCore,
// which starts again from what the batch then holds and gives the operation Xen's status.
public sealed unsafe partial class GrantTableHost
{
    // Returned by CopyOneGrantFrame when CopyOneCore must take the operation; never a status an operation gets.
    private const GrantStatus NotHandled = (GrantStatus)1;

    /// <summary>
    /// Copies one operation naming a v1 grant reference on one side and a frame of <c>DOMID_SELF</c> on the other,
    /// when nothing but the claims themselves is needed: the grant is not pinned (no copy or map holds it), the frames
    /// resolve, the bytes lie within the page. Returns <see cref="NotHandled"/>, having changed nothing a guest can
    /// see, for every other case, and before any failure status: <see cref="CopyOneCore"/> then decides.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private GrantStatus CopyOneGrantFrame(GrantDomain caller, in GnttabCopy op, ref CopyBatch batch)
    {
        ushort flags = (ushort)(op.Flags & CopyGrefFlags);
        if (flags == (ushort)GrantCopyFlags.SourceGref && op.Dest.DomId == DomainId.Self)
        {
            return CopyFromGrant(caller, in op, ref batch);
        }

        if (flags == (ushort)GrantCopyFlags.DestGref && op.Source.DomId == DomainId.Self)
        {
            return CopyIntoGrant(caller, in op, ref batch);
        }

        return NotHandled;
    }

    // Each direction is a method of its own, so that each is compiled with the whole claim inlined (one method holding
    // both ran out of the JIT's inlining budget in the second).
    [MethodImpl(MethodImplOptions.NoInlining)]
    private GrantStatus CopyFromGrant(GrantDomain caller, in GnttabCopy op, ref CopyBatch batch) =>
        ClaimGrantFrame(caller, in op.Source, in op.Dest, in op, ref batch.Src, ref batch.Dst, ref batch, grantReadOnly: true);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private GrantStatus CopyIntoGrant(GrantDomain caller, in GnttabCopy op, ref CopyBatch batch) =>
        ClaimGrantFrame(caller, in op.Dest, in op.Source, in op, ref batch.Dst, ref batch.Src, ref batch, grantReadOnly: false);

    // Both sides of CopyOneGrantFrame, the grant's side being the source (read-only) or the destination.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private GrantStatus ClaimGrantFrame(
        GrantDomain caller, in GnttabCopyPtr grant, in GnttabCopyPtr frame, in GnttabCopy op,
        ref CopyBuffer grantBuf, ref CopyBuffer frameBuf, ref CopyBatch batch, bool grantReadOnly)
    {
        // gnttab_copy_lock_domain for both sides, unless both already hold these domains and no domain was destroyed
        // since (then the caller and both are still alive).
        bool otherDomains = grantBuf.Domain is null || grantBuf.DomId != grant.DomId ||
            frameBuf.Domain is null || frameBuf.DomId != DomainId.Self;
        if (otherDomains || batch.DestroyedDomains != _destroyedDomains)
        {
            // gnttab_copy_one: a side naming another domid releases both buffers, so neither keeps its claim.
            if (otherDomains)
            {
                ReleaseBatch(ref batch);
            }

            if (caller.IsDestroyed ||
                LockCopyDomain(caller, grant.DomId, isGref: true, ref grantBuf) != GrantStatus.Okay ||
                LockCopyDomain(caller, DomainId.Self, isGref: false, ref frameBuf) != GrantStatus.Okay)
            {
                return NotHandled;
            }

            batch.DestroyedDomains = _destroyedDomains;
        }

        GrantDomain rd = grantBuf.Domain!;
        if (!HoldsCopyWord(in batch, rd) && !TakeCopyWordFor(rd, caller, ref batch))
        {
            return NotHandled;
        }

        if (rd.Version != 1)
        {
            return NotHandled;
        }

        // The frame side first, though Xen claims the source first: its lookups then run while the compare-exchange
        // that claims the grant waits for the stores before it to drain, rather than after it. A frame that does not
        // resolve changes nothing a guest sees and leaves the status to the general path, which claims in Xen's order.
        long epoch = Frames.Epoch;
        if (!IsBufferValid(in frame, isGref: false, in frameBuf, epoch))
        {
            ReleaseBuffer(ref frameBuf);
            if (GetPagedFrame(caller, frame.Gmfn, !grantReadOnly, out ulong mfn) != GrantStatus.Okay)
            {
                return NotHandled;
            }

            frameBuf.Gmfn = frame.Gmfn;
            frameBuf.Window = CopyBuffer.WholePage(haveGrant: false, readOnly: !grantReadOnly);
            frameBuf.Epoch = epoch;
            frameBuf.Virt = FrameBytes(mfn);
        }

        if (!IsBufferValid(in grant, isGref: true, in grantBuf, epoch))
        {
            ReleaseBuffer(ref grantBuf);
            GrantStatus rc = grantBuf.Shared
                ? ClaimUnpinnedGrantV1Locked(rd, grant.Ref, caller.Id, grantReadOnly, ref grantBuf, epoch)
                : ClaimUnpinnedGrantV1(rd, grant.Ref, caller.Id, grantReadOnly, ref grantBuf, epoch);
            if (rc != GrantStatus.Okay)
            {
                return rc;
            }
        }

        // gnttab_copy_buf: both sides are whole pages here, so the sub-page check of CopyBytes cannot fail.
        uint len = op.Len, from = op.Source.Offset, to = op.Dest.Offset;
        if (from + len > Page.PageSize || to + len > Page.PageSize)
        {
            return NotHandled;
        }

        FrameCopy.Copy(batch.Src.Virt + from, batch.Dst.Virt + to, len); // memmove semantics, as CopyBytes
        return GrantStatus.Okay;
    }

    // The granter's copy word, for a batch that claims nothing yet (a new call, or one whose domains just changed): taken
    // at once or not at all (CopyOneCore waits when it must). Both domains are checked again once it is held, since no
    // exclusive lock holder can destroy them from then on.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool TakeCopyWordFor(GrantDomain rd, GrantDomain caller, ref CopyBatch batch)
    {
        if (batch.Src.Virt != null || batch.Dst.Virt != null || !TryTakeCopyWordNow(rd, ref batch))
        {
            return false;
        }

        return !rd.IsDestroyed && !caller.IsDestroyed;
    }

    // ClaimUnpinnedGrantV1 under the entry's lock, for a copy sharing the granter's word with others.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private GrantStatus ClaimUnpinnedGrantV1Locked(GrantDomain rd, uint gref, ushort ldom, bool readOnly, ref CopyBuffer buf, long epoch)
    {
        if (gref >= (uint)rd.EntryCount)
        {
            return NotHandled;
        }

        ref ActiveGrantEntry act = ref rd.Active[gref];
        act.Enter();
        try
        {
            return ClaimUnpinnedGrantV1(rd, gref, ldom, readOnly, ref buf, epoch);
        }
        finally
        {
            act.Exit();
        }
    }

    // acquire_grant_for_copy for a v1 grant no one has pinned: checks the entry, resolves its frame, then sets
    // GTF_reading (and GTF_writing) with one compare-exchange, as _set_status_v1. Every check that fails before the
    // compare-exchange returns NotHandled (AcquireGrantForCopy then finds the same failure and its status); if the
    // granter moved the entry to another frame, or its EPT changed, meanwhile, the frame is resolved again as
    // AcquireGrantForCopy would.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private GrantStatus ClaimUnpinnedGrantV1(GrantDomain rd, uint gref, ushort ldom, bool readOnly, ref CopyBuffer buf, long epoch)
    {
        if (gref >= (uint)rd.EntryCount)
        {
            return NotHandled;
        }

        ref ActiveGrantEntry act = ref rd.Active[gref];
        if (act.Pin != 0)
        {
            return NotHandled;
        }

        var entry = (GrantEntryV1*)HeaderWord(rd, gref);
        long generation = rd.Ept.Generation; // before the lookup: see the re-read after the compare-exchange
        ulong both = Volatile.Read(ref *(ulong*)entry); // flags and domid (the header word), then the frame
        uint combo = (uint)both;
        uint gfn = (uint)(both >> 32);
        uint want = readOnly ? (uint)GrantEntryFlags.Reading : (uint)(GrantEntryFlags.Reading | GrantEntryFlags.Writing);
        if ((combo & (uint)GrantEntryFlags.TypeMask) != (uint)GrantEntryFlags.PermitAccess || DomIdOf(combo) != ldom ||
            (!readOnly && (combo & (uint)GrantEntryFlags.ReadOnly) != 0) ||
            GetPagedFrame(rd, gfn, readOnly, out ulong mfn) != GrantStatus.Okay ||
            Interlocked.CompareExchange(ref *(uint*)entry, combo | want, combo) != combo)
        {
            return NotHandled;
        }

        // acquire_grant_for_copy reads the frame and looks it up after _set_status_v1: a lookup made before the
        // compare-exchange counts only if neither the entry's frame nor the granter's EPT changed since (a granter
        // that moved the gfn while it saw the entry not in use must have the new frame used).
        uint now = Volatile.Read(ref entry->Frame);
        if (now != gfn || rd.Ept.Generation != generation)
        {
            GrantStatus rc = GetPagedFrame(rd, now, readOnly, out mfn);
            if (rc != GrantStatus.Okay)
            {
                ClearAfterFailedPin(rd, gref, 0, readOnly);
                return rc;
            }
        }

        act.PinWholePage(readOnly ? ActiveGrantEntry.HostReadIncrement : ActiveGrantEntry.HostWriteIncrement, ldom, mfn);
        act.Gfn = now;
        buf.Flags = &entry->Flags;
        buf.Window = CopyBuffer.WholePage(haveGrant: true, readOnly);
        buf.Ref = gref;
        buf.Epoch = epoch;
        buf.Virt = FrameBytes(mfn);
        return GrantStatus.Okay;
    }
}
