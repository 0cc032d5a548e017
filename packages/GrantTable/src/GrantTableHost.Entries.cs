using System.Runtime.CompilerServices;
using VmmKit.Ept;

namespace VmmKit.GrantTable;

// Shared-entry access and the GTF_reading/GTF_writing protocol (grant_table.c: _set_status_v1/_v2,
// gnttab_clear_flags, get_paged_frame).
public sealed unsafe partial class GrantTableHost
{
    private const int MaxStatusRetries = 4;

    /// <summary>The 32-bit word holding flags (low half) and domid (high half) of entry <paramref name="gref"/> (<c>union grant_combo</c>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private uint* HeaderWord(GrantDomain d, uint gref)
    {
        if (d.Version == 1)
        {
            byte* frame = FrameBytes(d.SharedFrames[gref / GrantEntryV1.PerFrame].Value);
            return (uint*)(frame + ((gref % GrantEntryV1.PerFrame) * GrantEntryV1.Size));
        }
        else
        {
            byte* frame = FrameBytes(d.SharedFrames[gref / GrantEntryV2.PerFrame].Value);
            return (uint*)(frame + ((gref % GrantEntryV2.PerFrame) * GrantEntryV2.Size));
        }
    }

    // The bytes of a machine frame the host has already validated (a table frame it allocated, a frame GetPagedFrame
    // resolved or an active entry holds): no bounds check, which MachineMemory.GetFramePointer does for anything else.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private byte* FrameBytes(ulong mfn) => _ram + (mfn << Page.PageShift);

    private GrantEntryV2* EntryV2(GrantDomain d, uint gref) => (GrantEntryV2*)HeaderWord(d, gref);

    private GrantEntryV1* EntryV1(GrantDomain d, uint gref) => (GrantEntryV1*)HeaderWord(d, gref);

    /// <summary>The 16 bits of v2 status entry <paramref name="gref"/> (grant_status_t, grant_table.h).</summary>
    private ushort* StatusHalf(GrantDomain d, uint gref) =>
        (ushort*)FrameBytes(d.StatusFrames[gref / GrantEntryV2.StatusPerFrame].Value) + gref % GrantEntryV2.StatusPerFrame;

    /// <summary>The aligned 32-bit word holding v2 status entry <paramref name="gref"/>, and the shift of its 16 bits in it.</summary>
    private uint* StatusWord(GrantDomain d, uint gref, out int shift)
    {
        nuint half = (nuint)StatusHalf(d, gref);
        shift = (int)(half & 2) * 8; // little-endian: the upper half of its word holds the odd entry
        return (uint*)(half & ~(nuint)3);
    }

    private static ushort FlagsOf(uint combo) => (ushort)combo;

    private static ushort DomIdOf(uint combo) => (ushort)(combo >> 16);

    private static uint ReadVolatile(uint* p) => Volatile.Read(ref *p);

    /// <summary>Atomically sets <paramref name="bits"/> in a 16-bit half of a guest-visible word.</summary>
    private static void SetBits16(uint* word, int shift, ushort bits)
    {
        uint mask = (uint)bits << shift;
        Interlocked.Or(ref *word, mask);
    }

    /// <summary>Atomically clears <paramref name="bits"/> in a 16-bit half of a guest-visible word (<c>gnttab_clear_flags</c>).</summary>
    private static void ClearBits16(uint* word, int shift, ushort bits)
    {
        uint mask = ~((uint)bits << shift);
        Interlocked.And(ref *word, mask);
    }

    /// <summary>
    /// Clears <paramref name="bits"/> (GTF_reading/GTF_writing) in the 16-bit half-word <paramref name="half"/> after
    /// the hypervisor's last use of a grant, atomically as Xen's <c>gnttab_clear_flags</c>: grant_table.h lets a
    /// granter set GTF_readonly (a compare-exchange while GTF_writing is clear) or clear it (an atomic bit operation)
    /// while the grant is in use, so a plain load and store here could undo that change.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ReleaseBits16(ushort* half, ushort bits)
    {
        uint shift = (uint)((nuint)half & 2) * 8; // little-endian: an odd half-word is the upper half of its word
        Interlocked.And(ref *(uint*)((nuint)half & ~(nuint)3), ~((uint)bits << (int)shift));
    }

    /// <summary>The guest-visible word holding GTF_reading/GTF_writing of a grant (the v1 header, or the v2 status word).</summary>
    private uint* FlagsWord(GrantDomain d, uint gref, out int shift)
    {
        if (d.Version == 1)
        {
            shift = 0;
            return HeaderWord(d, gref);
        }

        return StatusWord(d, gref, out shift);
    }

    /// <summary>Clears status flags of a grant after its last use of that kind; skipped when the granter's table is gone.</summary>
    private void ClearStatusFlags(GrantDomain rd, uint gref, GrantEntryFlags flags)
    {
        if (rd.IsDestroyed || flags == 0 || gref >= (uint)rd.EntryCount)
        {
            return;
        }

        ClearBits16(FlagsWord(rd, gref, out int shift), shift, (ushort)flags);
    }

    /// <summary>
    /// Checks that grant <paramref name="gref"/> of <paramref name="rd"/> permits <paramref name="ldomid"/> the access, and
    /// sets GTF_reading (and GTF_writing) where the guest sees them (<c>_set_status</c>); <paramref name="header"/> is the
    /// grant's <see cref="HeaderWord"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private GrantStatus SetStatus(GrantDomain rd, uint gref, uint* header, in ActiveGrantEntry act, bool readOnly, bool mapping, ushort ldomid)
    {
        // A map may not use a sub-page grant; transitive grants are refused altogether (see XSA-226 in the README).
        ushort mask = (ushort)(GrantEntryFlags.TypeMask | (mapping ? GrantEntryFlags.SubPage : 0));
        return rd.Version == 1
            ? SetStatusV1(header, act.Pin, readOnly, mask, ldomid)
            : SetStatusV2(rd, gref, header, act.Pin, readOnly, mask, ldomid);
    }

    // _set_status_v1: one compare-exchange of the entry's flags and domid, retried a few times if the guest changes it.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static GrantStatus SetStatusV1(uint* header, uint pin, bool readOnly, ushort mask, ushort ldomid)
    {
        uint combo = ReadVolatile(header);
        for (int retries = 0; ; retries++)
        {
            ushort flags = FlagsOf(combo);
            if (pin == 0 && ((flags & mask) != (ushort)GrantEntryFlags.PermitAccess || DomIdOf(combo) != ldomid))
            {
                return GrantStatus.GeneralError;
            }

            ushort newFlags = (ushort)(flags | (ushort)GrantEntryFlags.Reading);
            if (!readOnly)
            {
                if ((flags & (ushort)GrantEntryFlags.ReadOnly) != 0)
                {
                    return GrantStatus.GeneralError; // write-pin of a read-only grant
                }

                newFlags |= (ushort)GrantEntryFlags.Writing;
            }

            uint prev = Interlocked.CompareExchange(ref *header, (combo & 0xFFFF_0000u) | newFlags, combo);
            if (prev == combo)
            {
                return GrantStatus.Okay;
            }

            if (retries == MaxStatusRetries)
            {
                return GrantStatus.GeneralError; // the guest keeps changing the entry
            }

            combo = prev;
        }
    }

    // _set_status_v2: GTF_reading/GTF_writing go into the status frame, then the entry is read again (the guest may
    // have ended access in between, and sees the status before it checks).
    [MethodImpl(MethodImplOptions.NoInlining)]
    private GrantStatus SetStatusV2(GrantDomain rd, uint gref, uint* header, uint pin, bool readOnly, ushort mask, ushort ldomid)
    {
        uint combo = ReadVolatile(header);
        ushort flags = FlagsOf(combo);
        if (pin == 0 && ((flags & mask) != (ushort)GrantEntryFlags.PermitAccess || DomIdOf(combo) != ldomid))
        {
            return GrantStatus.GeneralError;
        }

        if (!readOnly && (flags & (ushort)GrantEntryFlags.ReadOnly) != 0)
        {
            return GrantStatus.GeneralError;
        }

        uint* status = StatusWord(rd, gref, out int shift);
        // The interlocked OR is a full fence: the guest sees the status before the entry is read again.
        SetBits16(status, shift, (ushort)(readOnly ? GrantEntryFlags.Reading : GrantEntryFlags.Reading | GrantEntryFlags.Writing));

        combo = ReadVolatile(header);
        flags = FlagsOf(combo);
        if (pin == 0)
        {
            if ((flags & mask) != (ushort)GrantEntryFlags.PermitAccess || DomIdOf(combo) != ldomid ||
                (!readOnly && (flags & (ushort)GrantEntryFlags.ReadOnly) != 0))
            {
                ClearBits16(status, shift, (ushort)(GrantEntryFlags.Reading | GrantEntryFlags.Writing));
                return GrantStatus.GeneralError;
            }
        }
        else if ((flags & (ushort)GrantEntryFlags.ReadOnly) != 0)
        {
            ClearBits16(status, shift, (ushort)GrantEntryFlags.Writing);
            return GrantStatus.GeneralError;
        }

        return GrantStatus.Okay;
    }

    /// <summary>
    /// Resolves a frame of <paramref name="d"/> for a grant or copy (<c>get_paged_frame</c>): it must be the domain's own
    /// RAM in its EPT (writable when <paramref name="readOnly"/> is false), not a grant mapping, not a grant-table frame,
    /// and not freed by its owner. Results are cached per domain until its EPT changes or a frame is freed through
    /// <see cref="FrameReferences.Free"/> (the reason a hypervisor must free domain frames there).
    /// </summary>
    /// <remarks>
    /// Copies running side by side read and fill one domain's cache (a control domain's backends resolve its frames on
    /// different vCPUs): fills take the domain's <c>FrameCacheLock</c> and make <c>FrameCacheSeq</c> odd while they write,
    /// and a lookup counts only if the sequence was even and unchanged across everything it read (a sequence lock).
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private GrantStatus GetPagedFrame(GrantDomain d, ulong gfn, bool readOnly, out ulong mfn)
    {
        // A hit needs the cache's stamp to be current (FrameCacheStamp would return it unchanged) and the entry tagged
        // with it; anything else takes the walk. Every read is volatile, so none moves past the sequence's second read.
        int seq = Volatile.Read(ref d.FrameCacheSeq);
        ulong stamp = Volatile.Read(ref d.FrameCacheStamp);
        if ((seq & 1) == 0 && !d.IsDestroyed && gfn < MaxGuestFrame && stamp != 0 &&
            d.Ept.Generation == Volatile.Read(ref d.FrameCacheGeneration) && Frames.Epoch == Volatile.Read(ref d.FrameCacheEpoch))
        {
            GrantDomain.FrameCacheEntry[] cache = Volatile.Read(ref d.FrameCache);
            ref GrantDomain.FrameCacheEntry cached = ref cache[(int)gfn & (cache.Length - 1)];
            ulong tag = Volatile.Read(ref cached.Tag);
            ulong found = Volatile.Read(ref cached.MfnAndAccess);
            if (tag == (gfn | (stamp << GrantDomain.FrameCacheEntry.StampShift)) &&
                (readOnly || (found & GrantDomain.FrameCacheEntry.WritableBit) != 0) &&
                Volatile.Read(ref d.FrameCacheSeq) == seq)
            {
                mfn = found & ~GrantDomain.FrameCacheEntry.WritableBit;
                return GrantStatus.Okay;
            }
        }

        return ResolvePagedFrame(d, gfn, readOnly, out mfn);
    }

    // GetPagedFrame past the cache: checks and walks, then caches what it found, one thread at a time per domain.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private GrantStatus ResolvePagedFrame(GrantDomain d, ulong gfn, bool readOnly, out ulong mfn)
    {
        mfn = 0;
        if (d.IsDestroyed || gfn >= MaxGuestFrame)
        {
            return GrantStatus.BadPage;
        }

        lock (d.FrameCacheLock)
        {
            // Generation and epoch are read before the walk, so an edit racing with it leaves the cached result stale.
            ulong stamp = FrameCacheStamp(d);
            GrantDomain.FrameCacheEntry[] cache = d.FrameCache;
            if (cache == GrantDomain.NoFrameCache)
            {
                // A domain that never copies (most domains on a busy host) has no cache; lookups of the shared empty
                // one miss, so readers need no sequence change to see the new one.
                cache = new GrantDomain.FrameCacheEntry[GrantDomain.FrameCacheInitialSize];
                Volatile.Write(ref d.FrameCache, cache);
            }

            ref GrantDomain.FrameCacheEntry cached = ref cache[(int)gfn & (cache.Length - 1)];
            if (cached.Tag == (gfn | (stamp << GrantDomain.FrameCacheEntry.StampShift)) &&
                (readOnly || (cached.MfnAndAccess & GrantDomain.FrameCacheEntry.WritableBit) != 0))
            {
                mfn = cached.MfnAndAccess & ~GrantDomain.FrameCacheEntry.WritableBit;
                return GrantStatus.Okay;
            }

            if (d.GrantMappedGfns.ContainsKey(gfn) || d.TableGfns.ContainsKey(gfn))
            {
                return GrantStatus.BadPage;
            }

            if (!TryLookupLive(d, gfn, out MachineFrameNumber frame, out EptAccess access) ||
                (access & EptAccess.Read) == 0 || (!readOnly && (access & EptAccess.Write) == 0))
            {
                return GrantStatus.BadPage;
            }

            // Pending first, then the owner: a copy of another granter's grant may complete the pending free of a frame
            // of d meanwhile (FrameReferences.ReleaseHeld frees it before it clears the count), so a frame seen not
            // pending and then owned by d was not freed in between.
            if (Frames.IsFreePending(frame) || !_memory.TryGetOwner(frame, out FrameOwner owner) || owner.DomainId != d.Id)
            {
                return GrantStatus.BadPage;
            }

            BeginCacheChange(d);
            ulong tag = gfn | (stamp << GrantDomain.FrameCacheEntry.StampShift);
            if (cached.Tag >> GrantDomain.FrameCacheEntry.StampShift == stamp && cached.Tag != tag)
            {
                d.FrameCacheConflicts++;
            }

            cached.Tag = tag;
            cached.MfnAndAccess = frame.Value | ((access & EptAccess.Write) != 0 ? GrantDomain.FrameCacheEntry.WritableBit : 0);
            if (++d.FrameCacheFills == cache.Length)
            {
                WeighFrameCache(d, stamp);
            }

            EndCacheChange(d);
            mfn = frame.Value;
            return GrantStatus.Okay;
        }
    }

    // The walk of d's EPT, for a domain whose EPT a VMM disposed before DestroyDomain (the wrong order, README's wiring
    // table): its frames no longer resolve, so a grantee's map or copy gets GNTST_bad_page and undoes what it did.
    private static bool TryLookupLive(GrantDomain d, ulong gfn, out MachineFrameNumber frame, out EptAccess access) =>
        TryLookupLive(d.Ept, new GuestFrameNumber(gfn), out frame, out access);

    // EptTables.TryLookup, false for a disposed EPT (it maps nothing any more) rather than ObjectDisposedException.
    internal static bool TryLookupLive(EptTables ept, GuestFrameNumber gfn, out MachineFrameNumber frame, out EptAccess access)
    {
        try
        {
            return ept.TryLookup(gfn, out frame, out access);
        }
        catch (ObjectDisposedException)
        {
            frame = default;
            access = default;
            return false;
        }
    }

    // The stamp that tags entries of d's frame cache valid now: a new one whenever d's EPT generation or the frame-free
    // epoch moved since the last look (both read before any walk whose result is then cached). Under d's FrameCacheLock.
    private static ulong FrameCacheStamp(GrantDomain d)
    {
        long generation = d.Ept.Generation;
        long epoch = d.Host.Frames.Epoch;
        if (generation != d.FrameCacheGeneration || epoch != d.FrameCacheEpoch || d.FrameCacheStamp == 0)
        {
            BeginCacheChange(d);
            d.FrameCacheGeneration = generation;
            d.FrameCacheEpoch = epoch;
            if (++d.FrameCacheStamp == GrantDomain.FrameCacheEntry.StampLimit)
            {
                if (d.FrameCache != GrantDomain.NoFrameCache)
                {
                    Array.Clear(d.FrameCache);
                }

                d.FrameCacheStamp = 1;
            }

            EndCacheChange(d);
        }

        return d.FrameCacheStamp;
    }

    // Every cache-size fills: when at least half of them evicted another frame's entry still valid, the frames the
    // domain copies to and from do not fit, so the cache doubles (up to FrameCacheMaxSize), keeping its valid entries
    // (in a cache twice as large an entry's slot is its old one or that plus the old size, so none collide). Entries
    // a change of the EPT or a free made stale are no conflict: a domain whose mappings change often does not grow it.
    // Under d's FrameCacheLock, inside a cache change.
    private static void WeighFrameCache(GrantDomain d, ulong stamp)
    {
        GrantDomain.FrameCacheEntry[] cache = d.FrameCache;
        if (d.FrameCacheConflicts * 2 >= d.FrameCacheFills && cache.Length < GrantDomain.FrameCacheMaxSize)
        {
            var larger = new GrantDomain.FrameCacheEntry[cache.Length * 2];
            foreach (ref readonly GrantDomain.FrameCacheEntry entry in cache.AsSpan())
            {
                if (entry.Tag >> GrantDomain.FrameCacheEntry.StampShift == stamp)
                {
                    larger[(int)entry.Tag & (larger.Length - 1)] = entry;
                }
            }

            Volatile.Write(ref d.FrameCache, larger);
        }

        d.FrameCacheFills = 0;
        d.FrameCacheConflicts = 0;
    }

    // The sequence is odd while the cache changes: the increment is a full fence, so no write of the change is seen
    // before it; the release store after keeps every write of the change before it.
    private static void BeginCacheChange(GrantDomain d) => Interlocked.Increment(ref d.FrameCacheSeq);

    private static void EndCacheChange(GrantDomain d) => Volatile.Write(ref d.FrameCacheSeq, d.FrameCacheSeq + 1);

    /// <summary>Guest frames past this are outside a 4-level EPT (48-bit guest-physical addresses).</summary>
    private const ulong MaxGuestFrame = 1UL << 36;
}
