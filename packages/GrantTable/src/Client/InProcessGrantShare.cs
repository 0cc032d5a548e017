using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable;

/// <summary>
/// <see cref="IGrantShare"/> for a domain whose kernel runs in this process: it writes the domain's shared grant
/// entries (and reads v2 status entries) exactly as a guest kernel writes them through its mapping of the table
/// frames, with the same ordering and compare-exchange protocol as Linux's grant-table driver (but a version 2 end
/// of access leaves the invalid entry <c>GTF_readonly</c>, see <see cref="IGrantShare.EndForeignAccess"/>). References
/// 0-7 are reserved (<c>GNTTAB_NR_RESERVED_ENTRIES</c>); when every other reference is taken the table grows by a
/// frame, up to the domain's <see cref="GrantTableLimits.MaxGrantFrames"/>, as Linux's <c>gnttab_expand</c>. Once
/// <see cref="GrantTableHost.DestroyDomain"/> ran for the domain, it grants nothing and every reference has ended.
/// Its methods may be called from several threads at once (a kernel's vCPUs), but not while
/// <see cref="GrantTableHost.DestroyDomain"/> or a version switch of the domain runs: the table frames they write
/// would be freed or laid out anew under them (call <c>DestroyDomain</c> after every thread using the share stopped,
/// as after the domain's vCPUs; Linux switches versions before it grants).
/// </summary>
public sealed unsafe class InProcessGrantShare : IGrantShare
{
    private const uint FirstFree = 8;
    private readonly GrantTableHost _host;
    private readonly GrantDomain _domain;
    private readonly Stack<uint> _free = new();
    private readonly HashSet<uint> _granted = [];
    private readonly List<uint> _pastTable = []; // free references a version switch left past the table's entries
    private uint _next = FirstFree;

    /// <summary>Creates the granting side of <paramref name="domain"/>.</summary>
    /// <param name="host">The grant tables.</param>
    /// <param name="domain">The granting domain, one of <paramref name="host"/>'s.</param>
    /// <exception cref="ArgumentException"><paramref name="domain"/> belongs to another host.</exception>
    public InProcessGrantShare(GrantTableHost host, GrantDomain domain)
    {
        ArgumentNullException.ThrowIfNull(host);
        ArgumentNullException.ThrowIfNull(domain);

        // The table is written by frame number in the host's memory: another host's domain would name frames of another
        // machine, and whatever this machine has under those numbers would be written.
        host.CheckCaller(domain);
        _host = host;
        _domain = domain;
    }

    /// <inheritdoc/>
    public bool TryGrantForeignAccess(ushort domainId, ulong frame, bool readOnly, out uint grantRef)
    {
        grantRef = 0;
        int version = _domain.Version;

        // grant_table_destroy freed the table frames (they may have another owner now); a v1 entry's frame is 32 bits
        // (grant_entry_v1_t: Linux picks v2 when frames may not fit, gnttab_need_v2). Refused before taking a reference.
        if (_domain.IsDestroyed || (version == 1 && frame > uint.MaxValue))
        {
            return false;
        }

        lock (_free)
        {
            // get_free_entries: when no reference is free, gnttab_expand grows the table by a frame, up to the domain's
            // limit (query_size's max_nr_frames); at the limit the grant is refused (-ENOSPC).
            if (!TryTakeReference(out grantRef) && !(Grow() && TryTakeReference(out grantRef)))
            {
                grantRef = 0;
                return false;
            }

            _granted.Add(grantRef);
        }

        ushort flags = (ushort)(GrantEntryFlags.PermitAccess | (readOnly ? GrantEntryFlags.ReadOnly : 0));
        if (version == 1)
        {
            var e = (GrantEntryV1*)Entry(grantRef, GrantEntryV1.Size, GrantEntryV1.PerFrame);
            e->Frame = (uint)frame;
            e->DomId = domainId;
            Interlocked.MemoryBarrier(); // frame and domid before flags (gnttab_update_entry_v1: wmb)
            Volatile.Write(ref e->Flags, flags);
        }
        else
        {
            var e = (GrantEntryV2*)Entry(grantRef, GrantEntryV2.Size, GrantEntryV2.PerFrame);
            e->Frame = frame;
            e->DomId = domainId;
            Interlocked.MemoryBarrier();
            Volatile.Write(ref e->Flags, flags);
        }

        return true;
    }

    // A free reference within the table, or the next never used; false when every one is taken. Under _free.
    private bool TryTakeReference(out uint grantRef)
    {
        uint entries = (uint)_domain.EntryCount;

        // A free reference past the table (a switch to v2, 256 entries per frame, left fewer entries) waits aside
        // until the domain grows its table over it again.
        for (int i = _pastTable.Count - 1; i >= 0; i--)
        {
            if (_pastTable[i] < entries)
            {
                _free.Push(_pastTable[i]);
                _pastTable.RemoveAt(i);
            }
        }

        while (_free.TryPop(out grantRef) && grantRef >= entries)
        {
            _pastTable.Add(grantRef);
        }

        if (grantRef >= FirstFree && grantRef < entries)
        {
            return true;
        }

        if (_next >= entries)
        {
            grantRef = 0;
            return false;
        }

        grantRef = _next++;
        return true;
    }

    // gnttab_expand by one frame, through GNTTABOP_setup_table as a guest asks for it (for a translated guest Linux
    // places the new frame with XENMEM_add_to_physmap, which grows the table the same way). Under _free.
    private bool Grow()
    {
        int frames = _domain.SharedFrameCount + 1;
        if (frames > _domain.Limits.MaxGrantFrames)
        {
            return false;
        }

        Span<ulong> gfns = frames <= 128 ? stackalloc ulong[frames] : new ulong[frames];
        return _host.SetupTable(_domain, privileged: false, DomainId.Self, (uint)frames, gfns) == GrantStatus.Okay;
    }

    /// <inheritdoc/>
    public bool EndForeignAccess(uint grantRef)
    {
        // One end at a time: two ends of one reference at once (a kernel bug) end it and free it once, and the other
        // finds it no longer granted, as an end after the first returned does; else both would push it on the free
        // references and two later grants would share its entry.
        lock (_free)
        {
            CheckGranted(grantRef);
            if (!EndAccess(grantRef))
            {
                return false;
            }

            _granted.Remove(grantRef);
            _free.Push(grantRef);
            return true;
        }
    }

    // gnttab_end_foreign_access_ref: true when the grant ended (nobody maps or copies through it).
    private bool EndAccess(uint grantRef)
    {
        const ushort busy = (ushort)(GrantEntryFlags.Reading | GrantEntryFlags.Writing);
        if (IsPastTable(grantRef))
        {
            // Nothing to end: the entry went with the table, and no grantee can use it.
        }
        else if (_domain.Version == 1)
        {
            // gnttab_end_foreign_access_ref_v1: clear the flags only while neither reading nor writing is set.
            uint* word = (uint*)Entry(grantRef, GrantEntryV1.Size, GrantEntryV1.PerFrame);
            uint combo = Volatile.Read(ref *word);
            while (true)
            {
                if ((combo & busy) != 0)
                {
                    return false;
                }

                uint prev = Interlocked.CompareExchange(ref *word, combo & 0xFFFF_0000u, combo);
                if (prev == combo)
                {
                    break;
                }

                combo = prev;
            }
        }
        else
        {
            // gnttab_end_foreign_access_ref_v2: invalidate, then the status says whether a user remains. The entry is
            // left GTF_readonly, not 0: for a pinned entry Xen's _set_status_v2 checks only GTF_readonly, so clearing it
            // would let a grantee still holding a read-only pin take a writable one (grant_table.h: only the granter
            // makes an entry writable). The type is GTF_invalid either way; a new grant rewrites the flags.
            var e = (GrantEntryV2*)Entry(grantRef, GrantEntryV2.Size, GrantEntryV2.PerFrame);
            Volatile.Write(ref e->Flags, (ushort)GrantEntryFlags.ReadOnly);
            Interlocked.MemoryBarrier();
            if ((Status(grantRef) & busy) != 0)
            {
                return false;
            }
        }

        return true;
    }

    /// <inheritdoc/>
    public bool IsForeignAccessInUse(uint grantRef)
    {
        CheckGranted(grantRef);
        if (IsPastTable(grantRef))
        {
            return false;
        }

        const ushort busy = (ushort)(GrantEntryFlags.Reading | GrantEntryFlags.Writing);
        ushort flags = _domain.Version == 1
            ? Volatile.Read(ref ((GrantEntryV1*)Entry(grantRef, GrantEntryV1.Size, GrantEntryV1.PerFrame))->Flags)
            : Status(grantRef);
        return (flags & busy) != 0;
    }

    private void CheckGranted(uint grantRef)
    {
        lock (_free)
        {
            if (!_granted.Contains(grantRef))
            {
                throw new ArgumentException($"Grant reference {grantRef} was not granted by this object.", nameof(grantRef));
            }
        }
    }

    // A reference at or past the table's entries names no entry: a switch to v2 left fewer entries (gnttab_set_version
    // clears them all but the reserved ones), or grant_table_destroy freed the table. Xen refuses such a reference to
    // every grantee (GNTST_bad_gntref), so it is in use by none and its grant has ended.
    private bool IsPastTable(uint grantRef) => grantRef >= (uint)_domain.EntryCount;

    private byte* Entry(uint grantRef, int size, int perFrame)
    {
        MachineFrameNumber frame = _domain.GetSharedFrame((int)(grantRef / (uint)perFrame));
        return _host.Memory.GetFramePointer(frame) + ((grantRef % (uint)perFrame) * (uint)size);
    }

    private ushort Status(uint grantRef)
    {
        MachineFrameNumber frame = _domain.GetStatusFrame((int)(grantRef / GrantEntryV2.StatusPerFrame));
        var p = (ushort*)_host.Memory.GetFramePointer(frame);
        return Volatile.Read(ref p[grantRef % GrantEntryV2.StatusPerFrame]);
    }
}
