namespace VmmKit.Ept;

/// <summary>
/// The hypervisor's editor for one domain's EPT (Xen's p2m for HAP guests): 4-level tables stored as real
/// 64-bit entries in machine frames, so hardware (or <see cref="EptWalker"/>) can walk them from <see cref="Pointer"/>.
/// </summary>
/// <remarks>
/// <para>
/// <see cref="Map"/> picks 1 GiB and 2 MiB pages whenever the guest frame, the machine frame and the remaining length
/// are aligned to them, and 4 KiB pages otherwise. Changing part of a large page splits it into the next smaller
/// size first, keeping the rest of the page as it was. Mapped pages keep their machine frame while their rights are
/// <see cref="EptAccess.None"/> (such an entry is not present to hardware; the frame is kept in the entry's
/// address bits and marked by software-available bit 52), so <see cref="Protect"/> can give rights back later.
/// </para>
/// <para>
/// Edits never flush translation caches: like on hardware, after changing or removing an existing mapping the
/// hypervisor must invalidate (INVEPT: <see cref="GuestPhysicalMemory.InvalidateSingleContext(MachineMemory, EptPointer)"/> for every cache that
/// uses this EPT, or <see cref="GuestPhysicalMemory.InvalidateAllContexts"/>). <see cref="Generation"/> counts such
/// edits so a consumer can tell whether it must. Table frames that are no longer used are zeroed at once (a walker racing
/// with the edit sees not-present entries, never another domain's data), stay charged to the owner, and are reused for new
/// tables of this EPT only after a later invalidation of any kind (all-context, single-context for every accessor, or
/// <see cref="GuestPhysicalMemory.InvalidateSingleContext()"/> on one accessor), as Xen frees page-table pages only after
/// the flush; so an edit/invalidate loop runs in a bounded number of table frames. An invalidation does not wait for
/// walks other threads have in flight, so a retired table is reused only at the level it had: a walk that still reads
/// it meets entries of the level it expects, of this EPT. They return to
/// machine memory with <see cref="ReleaseUnusedTableFrames"/> or <see cref="Dispose"/>.
/// </para>
/// <para>Edits are serialized by an internal lock; concurrent walks are safe (every entry is written with one 64-bit store).
/// Walks set accessed and dirty flags without the lock, so an edit that keeps a page's frame (<see cref="Protect"/>, a
/// same-frame <see cref="Map"/>) rewrites its entry with a compare-exchange that keeps them.</para>
/// </remarks>
public sealed unsafe class EptTables : IDisposable
{
    /// <summary>Software-available bit 52 (ignored by hardware): the leaf describes a mapping, even with no rights.</summary>
    internal const ulong SoftwareMappedBit = 1UL << 52;

    private const int Levels = 4;
    private const ulong FlagBits = EptEntry.AccessedBit | EptEntry.DirtyBit;
    private const ulong GuestFrameLimit = 1UL << (9 * Levels); // a 4-level walk covers 48 bits of guest-physical address

    private readonly object _gate = new();
    private readonly MachineMemory _memory;
    private readonly FrameOwner _owner;
    private readonly bool _accessedDirtyEnabled;
    private readonly Queue<(ulong Address, long Epoch)>[] _retiredTables = [new(), new(), new(), new()]; // by level - 1
    private MachineFrameNumber _root;
    private long _generation;
    private ulong _tableFrames;
    private bool _dirtyLogging;
    private bool _disposed;
    private System.Runtime.CompilerServices.StrongBox<long>? _contextInvalidations;

    /// <summary>Creates an empty EPT whose tables are charged to <paramref name="owner"/>.</summary>
    /// <param name="memory">Machine memory for the tables.</param>
    /// <param name="owner">Who is charged for the table frames (the domain, as Xen charges its paging pool).</param>
    /// <param name="accessedDirtyEnabled">Sets EPTP bit 6: walks set accessed and dirty flags (required for dirty logging).</param>
    /// <exception cref="MachineMemoryExhaustedException">No frame for the root table.</exception>
    public EptTables(MachineMemory memory, FrameOwner owner, bool accessedDirtyEnabled = false)
    {
        ArgumentNullException.ThrowIfNull(memory);
        _memory = memory;
        _owner = owner;
        _accessedDirtyEnabled = accessedDirtyEnabled;
        _root = new MachineFrameNumber(AllocateTable(Levels) >> Page.PageShift);
        Pointer = EptPointer.Create(_root, accessedDirtyEnabled);
        _contextInvalidations = memory.ContextInvalidations(_root);
    }

    /// <summary>The EPTP to load into the VMCS (write-back paging structures, 4-level walk, A/D as requested).</summary>
    public EptPointer Pointer { get; }

    /// <summary>The machine memory the tables live in.</summary>
    public MachineMemory Memory => _memory;

    /// <summary>Who the table frames are charged to.</summary>
    public FrameOwner Owner => _owner;

    /// <summary>
    /// Incremented by every edit that changes or removes an existing entry (remap, unmap, protect, dirty-log harvest).
    /// A holder of cached translations made at an older generation must invalidate before trusting them.
    /// </summary>
    public long Generation => Volatile.Read(ref _generation);

    /// <summary>Number of frames currently used as EPT paging structures, including the root.</summary>
    public ulong TableFrameCount
    {
        get
        {
            lock (_gate)
            {
                return _tableFrames;
            }
        }
    }

    /// <summary>Bytes of EPT paging structures in use: <see cref="TableFrameCount"/> × 4 KiB.</summary>
    public ulong TableBytes => TableFrameCount * Page.PageSize;

    /// <summary>True between <see cref="StartDirtyLog"/> and <see cref="StopDirtyLog"/>.</summary>
    public bool IsDirtyLogging => Volatile.Read(ref _dirtyLogging);

    /// <summary>
    /// Maps <paramref name="pageCount"/> pages from <paramref name="gpa"/> to the machine frames starting at
    /// <paramref name="frame"/>, replacing whatever was mapped there.
    /// </summary>
    /// <param name="gpa">Page-aligned guest-physical start.</param>
    /// <param name="frame">First machine frame.</param>
    /// <param name="pageCount">Number of 4 KiB pages.</param>
    /// <param name="access">Rights; <see cref="EptAccess.None"/> maps the frames without rights.</param>
    /// <param name="memoryType">EPT memory type of the pages.</param>
    /// <exception cref="ArgumentException">Unaligned address, a range past 2^48, frames outside machine memory, an undefined memory type, or write without read.</exception>
    /// <exception cref="MachineMemoryExhaustedException">No frame for a needed table; the range may be partly mapped.</exception>
    public void Map(GuestPhysicalAddress gpa, MachineFrameNumber frame, ulong pageCount, EptAccess access, EptMemoryType memoryType = EptMemoryType.WriteBack)
    {
        CheckRange(gpa, pageCount);
        if (frame.Value >= _memory.FrameCount || pageCount > _memory.FrameCount - frame.Value)
        {
            throw new ArgumentOutOfRangeException(nameof(frame), frame, "The machine frames are outside machine memory.");
        }

        if (memoryType is not (EptMemoryType.Uncacheable or EptMemoryType.WriteCombining or EptMemoryType.WriteThrough or EptMemoryType.WriteProtected or EptMemoryType.WriteBack))
        {
            throw new ArgumentOutOfRangeException(nameof(memoryType), memoryType, "Reserved EPT memory type.");
        }

        if ((access & (EptAccess.Read | EptAccess.Write)) == EptAccess.Write)
        {
            throw new ArgumentException("Write without read is an EPT misconfiguration (SDM §29.3.3.1).", nameof(access));
        }

        if (pageCount == 0)
        {
            return;
        }

        ulong leafBits = SoftwareMappedBit | EptEntry.FromAccess(access) | ((ulong)memoryType << EptEntry.MemoryTypeShift);
        lock (_gate)
        {
            ThrowIfDisposed();
            ulong start = gpa.Value >> Page.PageShift;
            MapRange(_root.Address, Levels, start, start + pageCount, frame.Value, leafBits);
        }
    }

    /// <summary>Removes the mappings of <paramref name="pageCount"/> pages from <paramref name="gpa"/>; unmapped pages are skipped.</summary>
    /// <param name="gpa">Page-aligned guest-physical start.</param>
    /// <param name="pageCount">Number of 4 KiB pages.</param>
    /// <exception cref="ArgumentException">Unaligned address or a range past 2^48.</exception>
    /// <exception cref="MachineMemoryExhaustedException">No frame to split a large page that is only partly unmapped.</exception>
    public void Unmap(GuestPhysicalAddress gpa, ulong pageCount)
    {
        CheckRange(gpa, pageCount);
        lock (_gate)
        {
            ThrowIfDisposed();
            ulong start = gpa.Value >> Page.PageShift;
            EditRange(_root.Address, Levels, start, start + pageCount, unmap: true, 0);
        }
    }

    /// <summary>Changes the rights of the mapped pages among <paramref name="pageCount"/> pages from <paramref name="gpa"/>; unmapped pages stay unmapped.</summary>
    /// <param name="gpa">Page-aligned guest-physical start.</param>
    /// <param name="pageCount">Number of 4 KiB pages.</param>
    /// <param name="access">The new rights (None keeps the mapping but makes it not present).</param>
    /// <exception cref="ArgumentException">Unaligned address, a range past 2^48, or write without read.</exception>
    /// <exception cref="MachineMemoryExhaustedException">No frame to split a large page that is only partly changed.</exception>
    public void Protect(GuestPhysicalAddress gpa, ulong pageCount, EptAccess access)
    {
        CheckRange(gpa, pageCount);
        if ((access & (EptAccess.Read | EptAccess.Write)) == EptAccess.Write)
        {
            throw new ArgumentException("Write without read is an EPT misconfiguration (SDM §29.3.3.1).", nameof(access));
        }

        lock (_gate)
        {
            ThrowIfDisposed();
            ulong start = gpa.Value >> Page.PageShift;
            EditRange(_root.Address, Levels, start, start + pageCount, unmap: false, EptEntry.FromAccess(access));
        }
    }

    /// <summary>Translates through these tables, as the processor would (see <see cref="EptWalker"/>); sets A/D flags when enabled.</summary>
    /// <param name="gpa">The guest-physical address.</param>
    /// <param name="access">The access being made.</param>
    /// <param name="translation">The translation on success.</param>
    /// <param name="violation">The exit qualification on a violation.</param>
    /// <returns>How the walk ended.</returns>
    public EptTranslationStatus Translate(GuestPhysicalAddress gpa, EptAccess access, out EptTranslation translation, out EptViolationQualification violation)
    {
        ThrowIfDisposed();
        return EptWalker.Translate(_memory, Pointer, gpa, access, default, out translation, out violation);
    }

    /// <summary>
    /// Looks up the mapping of <paramref name="gfn"/> without translating (no A/D updates), including mappings whose rights are None.
    /// </summary>
    /// <param name="gfn">The guest frame.</param>
    /// <param name="frame">The machine frame it maps to.</param>
    /// <param name="access">Its rights (the leaf's; table entries made by this class grant everything).</param>
    /// <returns>False when the frame is not mapped.</returns>
    public bool TryLookup(GuestFrameNumber gfn, out MachineFrameNumber frame, out EptAccess access)
    {
        frame = default;
        access = EptAccess.None;
        if (gfn.Value >= GuestFrameLimit)
        {
            return false;
        }

        lock (_gate)
        {
            ThrowIfDisposed();
            ulong table = _root.Address;
            for (int level = Levels; level >= 1; level--)
            {
                ulong e = *Slot(table, level, gfn.Value);
                if (e == 0)
                {
                    return false;
                }

                if (IsLeaf(e, level))
                {
                    ulong within = gfn.Value & (Coverage(level) - 1);
                    frame = new MachineFrameNumber(((e & EptEntry.AddressMask) >> Page.PageShift) + within);
                    access = EptEntry.ToAccess(e);
                    return true;
                }

                table = e & EptEntry.AddressMask;
            }

            return false;
        }
    }

    /// <summary>
    /// Starts dirty logging (Xen's log-dirty mode): splits every large page into 4 KiB pages, clears every dirty flag,
    /// and keeps new mappings at 4 KiB so <see cref="HarvestDirtyLog"/> reports single pages. Writes are seen through the
    /// EPT dirty flags, so the EPT must have been created with A/D flags enabled. Invalidate translation caches afterwards.
    /// </summary>
    /// <exception cref="InvalidOperationException">A/D flags are not enabled for this EPT.</exception>
    /// <exception cref="MachineMemoryExhaustedException">No frame to split a large page.</exception>
    public void StartDirtyLog()
    {
        if (!_accessedDirtyEnabled)
        {
            throw new InvalidOperationException("Dirty logging needs an EPT created with accessedDirtyEnabled: true.");
        }

        lock (_gate)
        {
            ThrowIfDisposed();
            ShatterAndClean(_root.Address, Levels);
            Volatile.Write(ref _dirtyLogging, true);
            Interlocked.Increment(ref _generation);
        }
    }

    /// <summary>
    /// Reports which of <paramref name="frameCount"/> guest frames from <paramref name="first"/> were written since the last
    /// harvest (or <see cref="StartDirtyLog"/>) and clears their dirty flags. Bit i of the bitmap (bit i % 64 of word i / 64)
    /// is frame first + i. After harvesting, the hypervisor must invalidate translation caches (INVEPT), or writes through a
    /// cached writable translation will not set the dirty flag again, exactly as with hardware TLBs.
    /// </summary>
    /// <param name="bitmap">At least ⌈frameCount / 64⌉ words; the covered bits are overwritten.</param>
    /// <param name="first">First guest frame.</param>
    /// <param name="frameCount">Number of guest frames.</param>
    /// <returns>The number of dirty frames reported.</returns>
    /// <exception cref="InvalidOperationException">Dirty logging is not running.</exception>
    /// <exception cref="ArgumentException">The bitmap is too short or the range passes 2^48.</exception>
    public ulong HarvestDirtyLog(Span<ulong> bitmap, GuestFrameNumber first, ulong frameCount)
    {
        if (first.Value > GuestFrameLimit || frameCount > GuestFrameLimit - first.Value)
        {
            throw new ArgumentOutOfRangeException(nameof(frameCount), frameCount, "The range passes the 48-bit guest-physical space.");
        }

        if ((ulong)bitmap.Length < (frameCount + 63) / 64)
        {
            throw new ArgumentException("The bitmap is too short for the range.", nameof(bitmap));
        }

        lock (_gate)
        {
            ThrowIfDisposed();
            if (!_dirtyLogging)
            {
                throw new InvalidOperationException("Dirty logging is not running.");
            }

            bitmap[..(int)((frameCount + 63) / 64)].Clear();
            ulong count = Harvest(_root.Address, Levels, first.Value, first.Value + frameCount, first.Value, bitmap);
            if (count != 0)
            {
                Interlocked.Increment(ref _generation);
            }

            return count;
        }
    }

    /// <summary>
    /// Records a write to <paramref name="gfn"/> that did not go through these tables (the hypervisor writing the frame
    /// itself, as Xen's <c>paging_mark_dirty</c> records it): sets the dirty flag of the entry mapping the frame, whatever
    /// its rights, so the next <see cref="HarvestDirtyLog"/> reports it. Does nothing while dirty logging is not running,
    /// for a frame that is not mapped, or once the tables are disposed. Needs no invalidation.
    /// </summary>
    /// <param name="gfn">The guest frame written.</param>
    /// <returns>True when the frame's entry is now marked dirty.</returns>
    public bool MarkDirty(GuestFrameNumber gfn)
    {
        if (gfn.Value >= GuestFrameLimit)
        {
            return false;
        }

        lock (_gate)
        {
            if (_disposed || !_dirtyLogging)
            {
                return false;
            }

            ulong table = _root.Address;
            for (int level = Levels; level >= 1; level--)
            {
                ulong* slot = Slot(table, level, gfn.Value);
                ulong e = *slot;
                if (e == 0)
                {
                    return false;
                }

                if (IsLeaf(e, level))
                {
                    // A large leaf (kept from before the log started) is reported whole by the harvest.
                    if ((e & EptEntry.DirtyBit) == 0)
                    {
                        Interlocked.Or(ref *slot, EptEntry.DirtyBit);
                    }

                    return true;
                }

                table = e & EptEntry.AddressMask;
            }

            return false;
        }
    }

    /// <summary>Stops dirty logging. Pages split by <see cref="StartDirtyLog"/> stay 4 KiB until remapped.</summary>
    public void StopDirtyLog()
    {
        lock (_gate)
        {
            Volatile.Write(ref _dirtyLogging, false);
        }
    }

    /// <summary>
    /// Returns to machine memory the zeroed table frames kept since they stopped being used. Call it after invalidating
    /// every translation cache and once no walk of this EPT can still be in flight.
    /// </summary>
    /// <returns>The number of frames freed.</returns>
    public ulong ReleaseUnusedTableFrames()
    {
        lock (_gate)
        {
            ulong n = 0;
            foreach (Queue<(ulong Address, long Epoch)> retiredTables in _retiredTables)
            {
                while (retiredTables.TryDequeue(out (ulong Address, long Epoch) retired))
                {
                    _memory.FreeFrame(new MachineFrameNumber(retired.Address >> Page.PageShift));
                    n++;
                }
            }

            return n;
        }
    }

    /// <summary>Frees every table frame, root included. The mapped frames themselves are not touched. <see cref="Pointer"/> becomes invalid.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            Retire(_root.Address, Levels);
            _disposed = true;
        }

        ReleaseUnusedTableFrames();
    }

    private static ulong Coverage(int level) => 1UL << (9 * (level - 1));

    private static bool IsLeaf(ulong entry, int level) => level == 1 || (level <= 3 && (entry & EptEntry.LargePageBit) != 0);

    private ulong* Slot(ulong table, int level, ulong gfn) =>
        (ulong*)(_memory.Base + table + (((gfn >> (9 * (level - 1))) & 511) << 3));

    private void MapRange(ulong table, int level, ulong start, ulong end, ulong firstFrame, ulong leafBits)
    {
        ulong span = Coverage(level);
        ulong gfn = start;
        while (gfn < end)
        {
            ulong entryStart = gfn & ~(span - 1);
            ulong entryEnd = entryStart + span;
            ulong stop = Math.Min(end, entryEnd);
            ulong mfn = firstFrame + (gfn - start);
            ulong* slot = Slot(table, level, gfn);
            ulong old = *slot;
            bool whole = gfn == entryStart && stop == entryEnd;
            bool largeOk = level == 1 || (level <= 3 && !_dirtyLogging && (mfn & (span - 1)) == 0);
            if (whole && largeOk)
            {
                ulong entry = (mfn << Page.PageShift) | leafBits | (level > 1 ? EptEntry.LargePageBit : 0);
                if ((old & ~FlagBits) != entry)
                {
                    if (old != 0 && IsLeaf(old, level) && (old & EptEntry.AddressMask) == (entry & EptEntry.AddressMask))
                    {
                        // The same frames with other rights or memory type: keep the flags walks set (SDM §29.3.5), or
                        // a write since the last harvest would be missing from the dirty log.
                        StoreKeepingFlags(slot, old, entry);
                    }
                    else
                    {
                        Volatile.Write(ref *slot, entry);
                    }

                    if (old != 0)
                    {
                        if (!IsLeaf(old, level))
                        {
                            Retire(old & EptEntry.AddressMask, level - 1);
                        }

                        Interlocked.Increment(ref _generation);
                    }
                }
            }
            else
            {
                ulong child = EnsureTable(slot, level);
                MapRange(child, level - 1, gfn, stop, mfn, leafBits);
            }

            gfn = stop;
        }
    }

    private void EditRange(ulong table, int level, ulong start, ulong end, bool unmap, ulong rights)
    {
        ulong span = Coverage(level);
        ulong gfn = start;
        while (gfn < end)
        {
            ulong entryStart = gfn & ~(span - 1);
            ulong entryEnd = entryStart + span;
            ulong stop = Math.Min(end, entryEnd);
            ulong* slot = Slot(table, level, gfn);
            ulong old = *slot;
            if (old != 0)
            {
                bool whole = gfn == entryStart && stop == entryEnd;
                if (IsLeaf(old, level))
                {
                    ulong updated = unmap ? 0 : (old & ~(EptEntry.PermissionMask | EptEntry.UserExecuteBit)) | rights;
                    if (updated != old)
                    {
                        if (whole)
                        {
                            if (unmap)
                            {
                                Volatile.Write(ref *slot, 0);
                            }
                            else
                            {
                                StoreKeepingFlags(slot, old, updated & ~FlagBits);
                            }

                            Interlocked.Increment(ref _generation);
                        }
                        else
                        {
                            EditRange(Split(slot, level), level - 1, gfn, stop, unmap, rights);
                        }
                    }
                }
                else
                {
                    ulong child = old & EptEntry.AddressMask;
                    EditRange(child, level - 1, gfn, stop, unmap, rights);
                    if (unmap && IsEmpty(child))
                    {
                        Volatile.Write(ref *slot, 0);
                        Retire(child, level - 1);
                    }
                }
            }

            gfn = stop;
        }
    }

    /// <summary>
    /// Stores <paramref name="value"/> (a leaf for the same frames, without flags) in <paramref name="slot"/>, last read as
    /// <paramref name="old"/>, with the accessed and dirty flags the slot holds when written: walks on other threads set
    /// them (SDM §29.3.5) without the lock, and a plain store of flags read before would drop a write from the dirty log.
    /// </summary>
    private static void StoreKeepingFlags(ulong* slot, ulong old, ulong value)
    {
        ulong current = old;
        while (true)
        {
            ulong previous = Interlocked.CompareExchange(ref *slot, value | (current & FlagBits), current);
            if (previous == current)
            {
                return;
            }

            current = previous; // only a walk's flags can have changed it: edits hold the lock
        }
    }

    /// <summary>Returns the table below <paramref name="slot"/>, allocating an empty one or splitting a large page.</summary>
    private ulong EnsureTable(ulong* slot, int level)
    {
        ulong e = *slot;
        if (e == 0)
        {
            ulong table = AllocateTable(level - 1);
            Volatile.Write(ref *slot, EptEntry.ForTable(new MachineFrameNumber(table >> Page.PageShift)).Value);
            return table;
        }

        return IsLeaf(e, level) ? Split(slot, level) : e & EptEntry.AddressMask;
    }

    /// <summary>
    /// Replaces the large page in <paramref name="slot"/> by a table of 512 entries of the next smaller size with the same
    /// frame, rights, memory type and A/D flags (the new table is complete before it is published).
    /// </summary>
    private ulong Split(ulong* slot, int level)
    {
        ulong e = *slot;
        ulong table = AllocateTable(level - 1);
        ulong* entries = (ulong*)(_memory.Base + table);
        ulong step = Coverage(level - 1) << Page.PageShift;
        ulong template = level - 1 == 1 ? e & ~EptEntry.LargePageBit : e;
        for (int i = 0; i < Page.EntriesPerTable; i++)
        {
            entries[i] = template + ((ulong)i * step);
        }

        Volatile.Write(ref *slot, EptEntry.ForTable(new MachineFrameNumber(table >> Page.PageShift)).Value);
        return table;
    }

    private void ShatterAndClean(ulong table, int level)
    {
        ulong* entries = (ulong*)(_memory.Base + table);
        for (int i = 0; i < Page.EntriesPerTable; i++)
        {
            ulong e = entries[i];
            if (e == 0)
            {
                continue;
            }

            if (level == 1)
            {
                if ((e & EptEntry.DirtyBit) != 0)
                {
                    Interlocked.And(ref entries[i], ~EptEntry.DirtyBit);
                }
            }
            else
            {
                ulong child = IsLeaf(e, level) ? Split(&entries[i], level) : e & EptEntry.AddressMask;
                ShatterAndClean(child, level - 1);
            }
        }
    }

    private ulong Harvest(ulong table, int level, ulong start, ulong end, ulong first, Span<ulong> bitmap)
    {
        ulong span = Coverage(level);
        ulong count = 0;
        ulong gfn = start;
        while (gfn < end)
        {
            ulong entryStart = gfn & ~(span - 1);
            ulong stop = Math.Min(end, entryStart + span);
            ulong* slot = Slot(table, level, gfn);
            ulong e = Volatile.Read(ref *slot);
            if (e != 0)
            {
                if (IsLeaf(e, level))
                {
                    if ((e & EptEntry.DirtyBit) != 0)
                    {
                        // Only 4 KiB leaves exist while logging; a large one (mapped before A/D was set) reports all its pages.
                        Interlocked.And(ref *slot, ~EptEntry.DirtyBit);
                        for (ulong f = gfn; f < stop; f++)
                        {
                            ulong bit = f - first;
                            bitmap[(int)(bit / 64)] |= 1UL << (int)(bit % 64);
                            count++;
                        }
                    }
                }
                else
                {
                    count += Harvest(e & EptEntry.AddressMask, level - 1, gfn, stop, first, bitmap);
                }
            }

            gfn = stop;
        }

        return count;
    }

    private bool IsEmpty(ulong table)
    {
        ulong* entries = (ulong*)(_memory.Base + table);
        for (int i = 0; i < Page.EntriesPerTable; i++)
        {
            if (entries[i] != 0)
            {
                return false;
            }
        }

        return true;
    }

    private ulong AllocateTable(int level)
    {
        // A retired table is reused only after an INVEPT (either kind) that followed its retirement, and only at its
        // own level: the INVEPT drops cached translations but does not wait for walks in flight on other threads, and
        // such a walk may still read the table as the level it had. Read as a page table, a page directory's pointers
        // to its page tables would be 4 KiB pages: the EPT's own tables, writable.
        Queue<(ulong Address, long Epoch)> retiredTables = _retiredTables[level - 1];
        if (retiredTables.TryPeek(out (ulong Address, long Epoch) oldest) && oldest.Epoch != InvalidationEpoch())
        {
            retiredTables.Dequeue();
            _tableFrames++;
            return oldest.Address;
        }

        ulong table = _memory.AllocateFrame(_owner).Address; // zeroed by the allocator: 512 not-present entries
        _tableFrames++;
        return table;
    }

    /// <summary>Zeroes a table no longer referenced (and the tables below it) and keeps its frame in the pool.</summary>
    private void Retire(ulong table, int level)
    {
        ulong* entries = (ulong*)(_memory.Base + table);
        if (level > 1)
        {
            for (int i = 0; i < Page.EntriesPerTable; i++)
            {
                ulong e = entries[i];
                if (e != 0 && !IsLeaf(e, level))
                {
                    Retire(e & EptEntry.AddressMask, level - 1);
                }
            }
        }

        new Span<byte>(entries, Page.PageSize).Clear();
        _tableFrames--;
        _retiredTables[level - 1].Enqueue((table, InvalidationEpoch()));
    }

    private static void CheckRange(GuestPhysicalAddress gpa, ulong pageCount)
    {
        if (!gpa.IsPageAligned)
        {
            throw new ArgumentException($"{gpa} is not page-aligned.", nameof(gpa));
        }

        ulong start = gpa.Value >> Page.PageShift;
        if (start >= GuestFrameLimit || pageCount > GuestFrameLimit - start)
        {
            throw new ArgumentOutOfRangeException(nameof(pageCount), pageCount, "The range passes the 48-bit guest-physical space of a 4-level EPT.");
        }
    }

    // Any INVEPT of this EPT counts: all-context, single-context for every accessor, or single-context on one accessor.
    private long InvalidationEpoch() =>
        Volatile.Read(ref _memory.TranslationEpoch) + (_contextInvalidations is null ? 0 : Volatile.Read(ref _contextInvalidations.Value));

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);
}
