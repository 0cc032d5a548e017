using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable;

// GNTTABOP_copy (grant_table.c: gnttab_copy, gnttab_copy_one, gnttab_copy_claim_buf, gnttab_copy_buf_valid,
// gnttab_copy_release_buf, acquire_grant_for_copy, release_grant_for_copy).
public sealed unsafe partial class GrantTableHost
{
    /// <summary>
    /// One operation of <c>GNTTABOP_copy</c>: copies <c>op.Len</c> bytes between a grant reference or a frame of the
    /// caller on either side, each side within its page (and within a v2 sub-page grant); sets <c>op.Status</c>.
    /// A frame number (no gref flag) is only accepted for <c>DOMID_SELF</c>. Allocates nothing.
    /// </summary>
    /// <param name="caller">The domain issuing the copy.</param>
    /// <param name="op">The operation, as read from the guest.</param>
    public void Copy(GrantDomain caller, ref GnttabCopy op) => Copy(caller, new Span<GnttabCopy>(ref op));

    /// <summary>
    /// Runs a batch of copy operations, setting each status. As in Xen, a grant (or frame) used by one operation stays
    /// claimed while the following operations use the same one on the same side, so a guest sees
    /// <c>GTF_reading</c>/<c>GTF_writing</c> on it until the batch ends or moves on. Copies run in parallel on
    /// different threads, copies of one granter's grants too.
    /// </summary>
    /// <param name="caller">The domain issuing the copies.</param>
    /// <param name="ops">The operations.</param>
    public void Copy(GrantDomain caller, Span<GnttabCopy> ops)
    {
        CheckCaller(caller);
        var batch = default(CopyBatch);
        try
        {
            for (int i = 0; i < ops.Length; i++)
            {
                ref GnttabCopy op = ref ops[i];
                op.Status = (short)CopyOne(caller, in op, ref batch);
            }
        }
        finally
        {
            ReleaseBatch(ref batch);
            ReleaseCopyWords(ref batch);
        }
    }

    /// <summary>
    /// Starts a hold of a batch whose operations arrive one at a time (the hypercall reads each from guest memory just
    /// before it runs): takes the copy words of what the batch still holds from its last hold. The caller then runs one
    /// or more <see cref="CopyHeld"/> and ends the hold with <see cref="EndCopyHold"/>; once the batch ends,
    /// <see cref="EndCopyBatch"/> on every path (Xen releases at the end of the hypercall, preempted or not).
    /// </summary>
    internal void BeginCopyHold(GrantDomain caller, ref CopyBatch batch)
    {
        Debug.Assert(batch.WordA is null, "a hold starts holding no copy word");
        bool src = batch.Src.HaveGrant, dst = batch.Dst.HaveGrant;
        if (src || dst || batch.KeyFlags != 0)
        {
            GrantDomain a = src ? batch.Src.Domain! : dst ? batch.Dst.Domain! : caller;
            TakeCopyWords(a, src && dst ? batch.Dst.Domain : null, ref batch);

            // A domain destroyed since the last hold is no longer one the exclusive lock waits for, so its claims are
            // released under that lock; the next operation naming it finds it gone.
            if (batch.WordA!.IsDestroyed || batch.WordB?.IsDestroyed == true)
            {
                ReleaseCopyWords(ref batch);
                EndCopyBatch(ref batch);
            }
        }
    }

    /// <summary>One operation of such a batch, within a hold; what <paramref name="batch"/> holds stays claimed.</summary>
    internal void CopyHeld(GrantDomain caller, ref GnttabCopy op, ref CopyBatch batch) =>
        op.Status = (short)CopyOne(caller, in op, ref batch);

    /// <summary>
    /// Ends a hold: releases what the batch holds when <paramref name="endsBatch"/>, otherwise keeps its claims across
    /// with frame references (<see cref="HoldAcrossUnlock(ref CopyBuffer)"/>); then lets go of the copy words.
    /// </summary>
    internal void EndCopyHold(ref CopyBatch batch, bool endsBatch)
    {
        if (endsBatch)
        {
            ReleaseBatch(ref batch);
        }
        else
        {
            HoldAcrossUnlock(ref batch.Src);
            HoldAcrossUnlock(ref batch.Dst);
        }

        ReleaseCopyWords(ref batch);
    }

    // acquire_grant_for_copy's get_page, for a claim that outlives its hold: the claimed grant's frame gets a reference,
    // so a free by its owner meanwhile is deferred and every pin of the entry names a live frame whenever no copy
    // holds the granter's word (other calls' copies and maps of the grant use act.Mfn). A claim made and released within
    // one hold needs none: a free takes the exclusive lock, which waits for the hold (a claim joining the pin of a frame
    // whose free is already pending took its reference in AcquireGrantForCopy).
    private void HoldAcrossUnlock(ref CopyBuffer buf)
    {
        if (buf.HaveGrant && !buf.Referenced)
        {
            Frames.AcquireHeld(buf.Domain!.Active[buf.Ref].Mfn, buf.Shared);
            buf.Referenced = true;
        }
    }

    /// <summary>
    /// Runs <paramref name="ops"/> of a batch in one hold (the compat hypercall's translated chunk), keeping what
    /// <paramref name="batch"/> holds claimed past it, or releasing it when <paramref name="endsBatch"/>; returns how
    /// many operations succeeded.
    /// </summary>
    internal int CopyHeldRun(GrantDomain caller, Span<GnttabCopy> ops, ref CopyBatch batch, bool endsBatch)
    {
        int okay = 0;
        BeginCopyHold(caller, ref batch);
        try
        {
            for (int i = 0; i < ops.Length; i++)
            {
                ref GnttabCopy op = ref ops[i];
                op.Status = (short)CopyOne(caller, in op, ref batch);
                okay += op.Status == 0 ? 1 : 0;
            }
        }
        finally
        {
            EndCopyHold(ref batch, endsBatch);
        }

        return okay;
    }

    /// <summary>Releases what a batch run in holds still holds, between holds.</summary>
    internal void EndCopyBatch(ref CopyBatch batch)
    {
        if (batch.Src.Domain is null && batch.Dst.Domain is null)
        {
            return;
        }

        using (Exclusive())
        {
            ReleaseBatch(ref batch);
        }
    }

    /// <summary>The two buffers of a copy batch (Xen's <c>src</c> and <c>dest</c> <c>gnttab_copy_buf</c>).</summary>
    internal struct CopyBatch
    {
        internal CopyBuffer Src;
        internal CopyBuffer Dst;
        internal long DestroyedDomains; // the host's count of destroyed domains when the domains were last checked
        internal GrantDomain? WordA;    // the copy words held (GrantTableHost.Exclusion.cs), lower Serial first
        internal GrantDomain? WordB;
        internal int WordsShared;       // bit 0: WordA is held shared, bit 1: WordB (GrantTableHost.Exclusion.cs)
        internal CopySlot? Slot;        // this thread's slot on the host, marked while a word is held

        // What both sides hold, as the first 32 bytes of an operation naming them (the two gnttab_copy_ptr) read under
        // KeyMask: per side the reference (4 bytes) or frame (8 bytes) and the domid, offsets and padding masked out.
        // Set after every operation CopyOneGrantFrame or CopyOneCore completes, when both sides hold what that
        // operation named, claimed or checked at the same FrameReferences.Epoch (Src.Epoch, which only those two
        // change).
        internal Vector256<ulong> Key;
        internal uint KeyFlags;  // the operation's GrantCopyFlags | Keyed; 0 when nothing is held
    }

    private const uint Keyed = 0x1_0000; // in CopyBatch.KeyFlags: above every 16-bit flags value

    // The key mask for each combination of GNTCOPY_source_gref and GNTCOPY_dest_gref (four lanes each): per side the
    // reference (4 bytes) or the frame (8 bytes), then the domid.
    private static ReadOnlySpan<ulong> KeyMasks =>
    [
        ulong.MaxValue, 0xFFFFUL, ulong.MaxValue, 0xFFFFUL,
        0xFFFF_FFFFUL, 0xFFFFUL, ulong.MaxValue, 0xFFFFUL,
        ulong.MaxValue, 0xFFFFUL, 0xFFFF_FFFFUL, 0xFFFFUL,
        0xFFFF_FFFFUL, 0xFFFFUL, 0xFFFF_FFFFUL, 0xFFFFUL,
    ];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<ulong> KeyMask(uint grefFlags) =>
        Vector256.LoadUnsafe(ref MemoryMarshal.GetReference(KeyMasks), grefFlags * 4);

    private const ushort CopyGrefFlags = (ushort)(GrantCopyFlags.SourceGref | GrantCopyFlags.DestGref);

    /// <summary>
    /// One side of a copy as last claimed: the domain the operation named, and the grant or frame with the part of
    /// the page it may touch. <see cref="Virt"/> is null when nothing is claimed.
    /// </summary>
    [StructLayout(LayoutKind.Explicit)]
    internal struct CopyBuffer
    {
        [FieldOffset(0)] public GrantDomain? Domain;
        [FieldOffset(8)] public byte* Virt;
        [FieldOffset(16)] public ulong Gmfn;       // frame side: the guest frame; gref side: unused
        [FieldOffset(24)] public long Epoch;       // FrameReferences.Epoch when claimed
        [FieldOffset(32)] public ushort* Flags;    // gref side: the guest-visible 16 bits holding GTF_reading/GTF_writing
        [FieldOffset(40)] public ushort Start;
        [FieldOffset(42)] public ushort Length;
        [FieldOffset(44)] public ushort End;       // Start + Length, at most PAGE_SIZE: the operations' bytes lie in [Start, End)
        [FieldOffset(46)] public bool HaveGrant;
        [FieldOffset(47)] public bool ReadOnly;
        [FieldOffset(48)] public uint Ref;
        [FieldOffset(52)] public ushort DomId;     // as the operation named it (DOMID_SELF or an id)
        [FieldOffset(54)] public bool Shared;      // a copy word the batch holds is shared: claims and releases lock the entry
        [FieldOffset(55)] public bool Referenced;  // gref side: holds a FrameReferences reference (see HoldAcrossUnlock)

        // Start, Length, End, HaveGrant and ReadOnly as one word (little-endian, as on x86), so a claim writes them
        // with one store.
        [FieldOffset(40)] public ulong Window;

        /// <summary><see cref="Window"/> for a whole page: Start 0, Length and End PAGE_SIZE.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static ulong WholePage(bool haveGrant, bool readOnly) =>
            (ulong)Page.PageSize << 16 | (ulong)Page.PageSize << 32 |
            (haveGrant ? 1UL << 48 : 0) | (readOnly ? 1UL << 56 : 0);
    }

    // The common case first: both sides name what the batch holds (gnttab_copy_buf_valid: same domid, same grant
    // reference or frame, with the same gref flags), no frame was freed and no domain destroyed since, and the bytes
    // lie within both; so nothing is claimed and nothing but the copy is written. Anything else takes
    // CopyOneGrantFrame (a backend's claims) or CopyOneCore, which checks everything.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private GrantStatus CopyOne(GrantDomain caller, in GnttabCopy op, ref CopyBatch batch)
    {
        if (batch.KeyFlags == ((uint)(op.Flags & CopyGrefFlags) | Keyed) &&
            batch.Src.Epoch == Frames.Epoch && batch.DestroyedDomains == _destroyedDomains &&
            (SidesOf(in op) & KeyMask(batch.KeyFlags & CopyGrefFlags)) == batch.Key)
        {
            uint len = op.Len, from = op.Source.Offset, to = op.Dest.Offset;
            if (from >= batch.Src.Start && from + len <= batch.Src.End && to >= batch.Dst.Start && to + len <= batch.Dst.End)
            {
                // In bounds: each side lies within [Start, End) of its claimed frame, End ≤ PAGE_SIZE. Memmove semantics,
                // as both sides may be one frame.
                FrameCopy.Copy(batch.Src.Virt + from, batch.Dst.Virt + to, len);
                MarkCopyDestination(in batch.Dst);
                return GrantStatus.Okay;
            }
        }

        GrantStatus rc = CopyOneGrantFrame(caller, in op, ref batch);
        if (rc == NotHandled)
        {
            rc = CopyOneCore(caller, in op, ref batch);
        }

        if (rc != GrantStatus.Okay)
        {
            ReleaseBatch(ref batch); // gnttab_copy: a failed operation releases both buffers
            return rc;
        }

        // Both sides now hold what this operation named, checked at this epoch.
        uint flags = (uint)(op.Flags & CopyGrefFlags);
        batch.Key = SidesOf(in op) & KeyMask(flags);
        batch.KeyFlags = flags | Keyed;
        MarkCopyDestination(in batch.Dst);
        return rc;
    }

    // gnttab_copy_buf's gnttab_mark_dirty(dest->domain, dest->mfn) after a successful copy: the destination's guest frame
    // in the destination's domain, only while its log-dirty mode is on (paging_mark_dirty), so without it a copy pays
    // a few loads and no store.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MarkCopyDestination(in CopyBuffer dst)
    {
        if (dst.Domain!.Ept.IsDirtyLogging)
        {
            MarkCopyDestinationLogged(in dst);
        }
    }

    // The frame side marks the operation's gfn; a grant side the gfn its pin resolved the frame from (act->gfn, stable
    // while the claim pins the entry), where Xen looks the frame's gfn up in the M2P: a granter that moved the frame to
    // another gfn since gets the old one marked.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void MarkCopyDestinationLogged(in CopyBuffer dst) =>
        MarkDirtyLogged(dst.Domain!.Ept, dst.HaveGrant ? dst.Domain.Active[dst.Ref].Gfn : dst.Gmfn);

    // gnttab_mark_dirty for a domain whose log-dirty mode is on: the frame's EPT entry gets its dirty flag, whatever its
    // rights, as paging_mark_dirty marks by frame (a host write does not walk the EPT, so nothing else would set it).
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void MarkDirtyLogged(EptTables ept, ulong gfn) => ept.MarkDirty(new GuestFrameNumber(gfn));

    // gnttab_mark_dirty for a granter's frame written by someone else: as MarkCopyDestination.
    private static void MarkDirty(GrantDomain d, ulong gfn)
    {
        if (d.Ept.IsDirtyLogging)
        {
            MarkDirtyLogged(d.Ept, gfn);
        }
    }

    // The two gnttab_copy_ptr of an operation (its first 32 bytes) as four 64-bit lanes.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<ulong> SidesOf(in GnttabCopy op) =>
        Vector256.LoadUnsafe(ref Unsafe.As<GnttabCopy, ulong>(ref Unsafe.AsRef(in op)));

    [MethodImpl(MethodImplOptions.NoInlining)]
    private GrantStatus CopyOneCore(GrantDomain caller, in GnttabCopy op, ref CopyBatch batch)
    {
        if (caller.IsDestroyed)
        {
            return GrantStatus.BadDomain;
        }

        bool srcGref = (op.Flags & (ushort)GrantCopyFlags.SourceGref) != 0;
        bool dstGref = (op.Flags & (ushort)GrantCopyFlags.DestGref) != 0;

        GrantStatus rc;
        while (true)
        {
            // gnttab_copy_one: a side naming another domid than the batch holds releases both buffers before the
            // domains are locked again, so the side that did not change is claimed afresh too.
            if (batch.Src.Domain is null || batch.Src.DomId != op.Source.DomId ||
                batch.Dst.Domain is null || batch.Dst.DomId != op.Dest.DomId)
            {
                ReleaseBatch(ref batch);
            }

            // gnttab_copy_lock_domain, for every operation: only DOMID_SELF may be addressed by frame number.
            rc = LockCopyDomain(caller, op.Source.DomId, srcGref, ref batch.Src);
            if (rc == GrantStatus.Okay)
            {
                rc = LockCopyDomain(caller, op.Dest.DomId, dstGref, ref batch.Dst);
            }

            if (rc != GrantStatus.Okay)
            {
                return rc;
            }

            if (HoldsCopyWordsFor(caller, srcGref, dstGref, in batch, out GrantDomain a, out GrantDomain? b))
            {
                break;
            }

            // Claims go before their words; then the words this operation needs are taken, and its domains looked up
            // again (one may have been destroyed before they were held).
            ReleaseBatch(ref batch);
            ReleaseCopyWords(ref batch);
            TakeCopyWords(a, b, ref batch);
        }

        if (caller.IsDestroyed)
        {
            return GrantStatus.BadDomain;
        }

        batch.DestroyedDomains = _destroyedDomains; // the caller and both domains are alive as of this count

        // gnttab_copy_buf_valid: a side naming what that side already holds reuses it; otherwise release and claim.
        long epoch = Frames.Epoch;
        if (!IsBufferValid(in op.Source, srcGref, in batch.Src, epoch))
        {
            ReleaseBuffer(ref batch.Src);
            rc = ClaimBuffer(caller, in op.Source, srcGref, readOnly: true, ref batch.Src, epoch);
            if (rc != GrantStatus.Okay)
            {
                return rc;
            }
        }

        if (!IsBufferValid(in op.Dest, dstGref, in batch.Dst, epoch))
        {
            ReleaseBuffer(ref batch.Dst);
            rc = ClaimBuffer(caller, in op.Dest, dstGref, readOnly: false, ref batch.Dst, epoch);
            if (rc != GrantStatus.Okay)
            {
                return rc;
            }
        }

        return CopyBytes(in op, in batch.Src, in batch.Dst);
    }

    // The copy words an operation needs (GrantTableHost.Exclusion.cs): those of the domains whose grants it names, or
    // the caller's when it names frames only; true when the batch holds them.
    private static bool HoldsCopyWordsFor(GrantDomain caller, bool srcGref, bool dstGref, in CopyBatch batch, out GrantDomain a, out GrantDomain? b)
    {
        a = srcGref ? batch.Src.Domain! : dstGref ? batch.Dst.Domain! : caller;
        b = srcGref && dstGref ? batch.Dst.Domain : null;
        return HoldsCopyWord(in batch, a) && (b is null || HoldsCopyWord(in batch, b));
    }

    // Xen keeps the domain it looked up (an RCU reference) while consecutive operations name the same domid; a domain
    // destroyed in between (possible between the holds of a hypercall) is looked up again.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private GrantStatus LockCopyDomain(GrantDomain caller, ushort domid, bool isGref, ref CopyBuffer buf)
    {
        if (domid != DomainId.Self && !isGref)
        {
            return GrantStatus.PermissionDenied;
        }

        GrantDomain? d = buf.Domain;
        if (d is not null && buf.DomId == domid && !d.IsDestroyed)
        {
            return GrantStatus.Okay;
        }

        ReleaseBuffer(ref buf);
        d = LookupByAnyId(caller, domid);
        if (d is null)
        {
            return GrantStatus.BadDomain;
        }

        buf.Domain = d;
        buf.DomId = domid;
        return GrantStatus.Okay;
    }

    // gnttab_copy_buf_valid, plus what Xen's page references give it for free: a side is kept only while no frame was
    // freed since it was claimed (FrameReferences.Epoch), so the frame it holds is still its owner's; otherwise it is
    // claimed again, with every check of a first claim. As in Xen, a frame side stays claimed across a change of the
    // caller's EPT that frees nothing (Xen keeps the page it took a reference on, whatever the p2m says since).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool IsBufferValid(in GnttabCopyPtr ptr, bool isGref, in CopyBuffer buf, long epoch)
    {
        if (buf.Virt == null || buf.Epoch != epoch)
        {
            return false;
        }

        return isGref
            ? buf.HaveGrant && buf.Ref == ptr.Ref
            : !buf.HaveGrant && buf.Gmfn == ptr.Gmfn;
    }

    // gnttab_copy_claim_buf.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private GrantStatus ClaimBuffer(GrantDomain caller, in GnttabCopyPtr ptr, bool isGref, bool readOnly, ref CopyBuffer buf, long epoch)
    {
        GrantDomain d = buf.Domain!;
        GrantStatus rc;
        ulong mfn;
        if (isGref)
        {
            rc = buf.Shared
                ? AcquireGrantForCopyLocked(d, ptr.Ref, caller.Id, readOnly, ref buf, out mfn)
                : AcquireGrantForCopy(d, ptr.Ref, caller.Id, readOnly, ref buf, out mfn);
            if (rc != GrantStatus.Okay)
            {
                return rc;
            }

            buf.Ref = ptr.Ref;
            buf.HaveGrant = true;
        }
        else
        {
            rc = GetPagedFrame(d, ptr.Gmfn, readOnly, out mfn);
            if (rc != GrantStatus.Okay)
            {
                return rc;
            }

            buf.Gmfn = ptr.Gmfn;
            buf.Start = 0;
            buf.Length = Page.PageSize;
        }

        buf.End = (ushort)Math.Min((uint)buf.Start + buf.Length, Page.PageSize);
        buf.ReadOnly = readOnly;
        buf.Epoch = epoch;
        buf.Virt = FrameBytes(mfn);
        return GrantStatus.Okay;
    }

    // gnttab_copy_buf: the checks of every operation, then the copy.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static GrantStatus CopyBytes(in GnttabCopy op, in CopyBuffer src, in CopyBuffer dst)
    {
        uint len = op.Len;
        uint from = op.Source.Offset, to = op.Dest.Offset;
        if (from + len > Page.PageSize || to + len > Page.PageSize)
        {
            return GrantStatus.BadCopyArg; // "copy beyond page area"
        }

        if (from < src.Start || from + len > (uint)src.Start + src.Length ||
            to < dst.Start || to + len > (uint)dst.Start + dst.Length)
        {
            return GrantStatus.GeneralError; // outside a sub-page grant
        }

        FrameCopy.Copy(src.Virt + from, dst.Virt + to, len); // memmove semantics: both sides may be one frame
        return GrantStatus.Okay;
    }

    // AcquireGrantForCopy under the entry's lock, for a copy sharing the granter's word with others.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private GrantStatus AcquireGrantForCopyLocked(GrantDomain rd, uint gref, ushort ldom, bool readOnly, ref CopyBuffer buf, out ulong frame)
    {
        if (gref >= (uint)rd.EntryCount)
        {
            frame = 0;
            return GrantStatus.BadGntref;
        }

        ref ActiveGrantEntry act = ref rd.Active[gref];
        act.Enter();
        try
        {
            return AcquireGrantForCopy(rd, gref, ldom, readOnly, ref buf, out frame);
        }
        finally
        {
            act.Exit();
        }
    }

    // acquire_grant_for_copy (transitive grants are refused by SetStatus).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private GrantStatus AcquireGrantForCopy(GrantDomain rd, uint gref, ushort ldom, bool readOnly, ref CopyBuffer buf, out ulong frame)
    {
        frame = 0;
        if (gref >= (uint)rd.EntryCount)
        {
            return GrantStatus.BadGntref;
        }

        // acquire_grant_for_copy: other grantee, or risk of overflow of the counter this claim increments (Xen 4.17's
        // GNTPIN_incr2oflow_mask(pin_incr)).
        uint increment = readOnly ? ActiveGrantEntry.HostReadIncrement : ActiveGrantEntry.HostWriteIncrement;
        ref ActiveGrantEntry act = ref rd.Active[gref];
        if (act.Pin != 0 && (act.DomId != ldom || (act.Pin & ActiveGrantEntry.OverflowMask(increment)) != 0))
        {
            return GrantStatus.GeneralError;
        }

        uint* header = HeaderWord(rd, gref);

        // A v2 entry's type is checked at every claim, pinned or not: a transitive grant is refused (XSA-226), even one
        // the granter made transitive while a mapping or another copy pins it. Nothing is set, so nothing is cleared.
        if (rd.Version == 2 &&
            (Volatile.Read(ref ((GrantEntryV2*)header)->Flags) & (ushort)GrantEntryFlags.TypeMask) == (ushort)GrantEntryFlags.Transitive)
        {
            return GrantStatus.GeneralError;
        }

        uint oldPin = act.Pin;
        if (oldPin == 0 || (!readOnly && (oldPin & (ActiveGrantEntry.HostWriteMask | ActiveGrantEntry.DeviceWriteMask)) == 0))
        {
            // v1: resolve the frame the entry names now, while the stores of the copy before drain (the compare-exchange
            // below waits for them); the result counts only if the entry still names that frame, and the granter's EPT
            // is unchanged, once GTF_reading is set.
            uint earlyGfn = 0;
            ulong earlyMfn = 0;
            long earlyGeneration = 0;
            GrantStatus earlyRc = GrantStatus.GeneralError;
            if (rd.Version == 1)
            {
                earlyGeneration = rd.Ept.Generation;
                earlyGfn = Volatile.Read(ref ((GrantEntryV1*)header)->Frame);
                earlyRc = GetPagedFrame(rd, earlyGfn, readOnly, out earlyMfn);
            }

            GrantStatus rc = SetStatus(rd, gref, header, act, readOnly, mapping: false, ldom);
            if (rc != GrantStatus.Okay)
            {
                return rc;
            }

            ulong gfn;
            ushort start = 0, length = Page.PageSize;
            bool subPage = false;
            ulong mfn;
            if (rd.Version == 1)
            {
                gfn = Volatile.Read(ref ((GrantEntryV1*)header)->Frame);
            }
            else
            {
                var e = (GrantEntryV2*)header;
                gfn = Volatile.Read(ref e->Frame);
                if ((Volatile.Read(ref e->Flags) & (ushort)GrantEntryFlags.SubPage) != 0)
                {
                    subPage = true;
                    start = (ushort)(Volatile.Read(ref e->SubPageOffset) & 0x7FFF); // active_grant_entry's start:15
                    length = Volatile.Read(ref e->SubPageLength);
                }
            }

            // get_paged_frame runs after _set_status: the early result counts only if neither the entry's frame nor
            // the granter's EPT changed since it was looked up.
            if (rd.Version == 1 && gfn == earlyGfn && rd.Ept.Generation == earlyGeneration)
            {
                rc = earlyRc;
                mfn = earlyMfn;
            }
            else
            {
                rc = GetPagedFrame(rd, gfn, readOnly, out mfn);
            }

            if (rc != GrantStatus.Okay)
            {
                ClearAfterFailedPin(rd, gref, act.Pin, readOnly);
                return rc;
            }

            if (act.Pin == 0)
            {
                act.DomId = ldom;
                act.IsSubPage = subPage;
                act.Start = start;
                act.Length = length;
                act.Mfn = mfn;
                act.Gfn = gfn;
            }
        }
        else if (rd.IsDestroyed || !_memory.TryGetOwner(new MachineFrameNumber(act.Mfn), out FrameOwner owner) || owner.DomainId != rd.Id)
        {
            return GrantStatus.BadDomain; // the pinned frame no longer belongs to the granter
        }

        // A claim that joins a pin (either branch with oldPin set uses act.Mfn) of a frame the granter freed since it was
        // pinned: every pin of it holds a reference, and the last reference may go while this claim still uses the frame
        // (another claim of the batch released, or a copy sharing the word), so this claim takes its own, as every claim
        // of acquire_grant_for_copy takes a page reference (page_get_owner_and_reference). Under the entry's lock when
        // copies share the word: the other pins' references cannot all go before it is taken.
        if (oldPin != 0 && Frames.IsFreePending(new MachineFrameNumber(act.Mfn)))
        {
            Frames.AcquireHeld(act.Mfn, buf.Shared);
            buf.Referenced = true;
        }

        act.Pin += increment;
        buf.Flags = rd.Version == 1 ? (ushort*)header : StatusHalf(rd, gref);
        buf.Start = act.Start;
        buf.Length = act.Length;
        frame = act.Mfn;
        return GrantStatus.Okay;
    }

    // gnttab_copy_release_buf / release_grant_for_copy: unpin, drop the frame reference if the claim took one, and clear
    // GTF_writing / GTF_reading after the last use. An entry past the eight reserved ones cannot change version while
    // pinned (set_version refuses), so its flags are cleared in the word found when it was claimed; a reserved entry may
    // stay pinned across a switch that moves its flags (and v2 -> v1 frees the status frames), so its word is found
    // again in the table's current layout, as Xen finds it at every release.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void ReleaseBuffer(ref CopyBuffer buf)
    {
        buf.Virt = null;
        if (!buf.HaveGrant)
        {
            return;
        }

        buf.HaveGrant = false;
        GrantDomain rd = buf.Domain!;
        ref ActiveGrantEntry act = ref rd.Active[buf.Ref];
        if (buf.Shared)
        {
            ReleaseLocked(ref buf, rd, ref act);
            return;
        }

        ReleaseClaim(ref buf, rd, ref act);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ReleaseLocked(ref CopyBuffer buf, GrantDomain rd, ref ActiveGrantEntry act)
    {
        act.Enter();
        try
        {
            ReleaseClaim(ref buf, rd, ref act);
        }
        finally
        {
            act.Exit();
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void ReleaseClaim(ref CopyBuffer buf, GrantDomain rd, ref ActiveGrantEntry act)
    {
        act.Pin -= buf.ReadOnly ? ActiveGrantEntry.HostReadIncrement : ActiveGrantEntry.HostWriteIncrement;
        if (buf.Referenced)
        {
            buf.Referenced = false;
            Frames.ReleaseHeld(act.Mfn, buf.Shared);
        }

        GrantEntryFlags clear = FlagsToClear(act.Pin, buf.ReadOnly);
        if (clear != 0 && !rd.IsDestroyed)
        {
            if (buf.Ref >= ReservedEntries)
            {
                ReleaseBits16(buf.Flags, (ushort)clear);
            }
            else
            {
                ClearStatusFlags(rd, buf.Ref, clear);
            }
        }
    }

    // End of gnttab_copy: both buffers released, both domains unlocked.
    private void ReleaseBatch(ref CopyBatch batch)
    {
        batch.KeyFlags = 0;
        ReleaseBuffer(ref batch.Src);
        ReleaseBuffer(ref batch.Dst);
        batch.Src.Domain = null;
        batch.Dst.Domain = null;
    }
}
