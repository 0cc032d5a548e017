using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable;

/// <summary>
/// The hypervisor side of Xen's grant tables (xen/common/grant_table.c) for HVM/PVH domains: every domain's
/// table, maptrack and mappings, and the operations of <c>__HYPERVISOR_grant_table_op</c> on them. A grant
/// mapping is an entry in the grantee's EPT pointing at the granter's frame (read-only when the grant or the
/// request says so), counted in <see cref="Frames"/> so the frame outlives the granter's free.
/// </summary>
/// <remarks>
/// <para>
/// Guest input is never trusted: every operation checks it the way Xen does and reports Xen's
/// <see cref="GrantStatus"/> or negated errno; nothing a guest passes makes these methods throw.
/// Exceptions are reserved for host programming errors (a null domain, a domain of another host).
/// </para>
/// <para>
/// Thread-safe. <c>GNTTABOP_copy</c> calls of different threads run side by side while they claim different
/// granters' grants (a control domain's backends on its vCPUs, each serving its own frontends): a copy holds a word
/// per granter, where Xen takes the granter's grant-table read lock and per-entry locks. Every other operation takes
/// one exclusive lock, which waits for the copies running and holds new ones back, so the invariants of maps, unmaps,
/// table changes, frees and domain death are those of one lock. The shared entries and status words live in
/// guest-visible frames and are updated with atomic compare-exchange, as in Xen, because the guest writes them
/// concurrently.
/// </para>
/// </remarks>
public sealed unsafe partial class GrantTableHost
{
    private readonly GrantDomain?[] _byId = new GrantDomain?[DomainId.FirstReserved]; // live domains; copies read it unlocked
    private readonly GrantDomain?[] _dyingById = new GrantDomain?[DomainId.FirstReserved]; // between DestroyDomain's holds
    private readonly MachineMemory _memory;
    private readonly byte* _ram; // machine frame 0's bytes: frames the host validated (table frames, resolved frames) are _ram + mfn * 4 KiB
    private long _destroyedDomains; // domains destroyed so far: a copy batch re-checks its domains when this moved
    private long _domainSerials;    // GrantDomain.Serial of the last domain created

    /// <summary>Creates the grant-table state of a machine, with Xen's default limits (<see cref="GrantTableLimits.Default"/>).</summary>
    /// <param name="frames">The frame reference counts of the machine (the hypervisor frees domain frames through them); one host per instance.</param>
    /// <exception cref="ArgumentException"><paramref name="frames"/> is already used by another host.</exception>
    public GrantTableHost(FrameReferences frames)
        : this(frames, GrantTableLimits.Default)
    {
    }

    /// <summary>Creates the grant-table state of a machine with its own limits (see <see cref="HostLimits"/>).</summary>
    /// <param name="frames">The frame reference counts of the machine (the hypervisor frees domain frames through them); one host per instance.</param>
    /// <param name="hostLimits">
    /// The host's limits, as Xen's <c>gnttab_max_frames</c>, <c>gnttab_max_maptrack_frames</c> and <c>gnttab=max-ver</c>
    /// command-line options: grant frames 1 to 1024, maptrack frames 0 to 1024, version 1 or 2.
    /// </param>
    /// <exception cref="ArgumentException"><paramref name="frames"/> is already used by another host.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A limit of <paramref name="hostLimits"/> is out of range.</exception>
    public GrantTableHost(FrameReferences frames, GrantTableLimits hostLimits)
    {
        ArgumentNullException.ThrowIfNull(frames);
        if (!Within(hostLimits, AbsoluteLimits))
        {
            throw new ArgumentOutOfRangeException(nameof(hostLimits), hostLimits, "grant frames must be 1..1024, maptrack frames 0..1024 and the version 1 or 2.");
        }

        HostLimits = hostLimits;
        frames.AttachHost(this);
        Frames = frames;
        _memory = frames.Memory;
        _ram = _memory.GetFramePointer(new MachineFrameNumber(0));
    }

    /// <summary>
    /// The host's limits (Xen's <c>opt_max_grant_frames</c>, <c>opt_max_maptrack_frames</c> and
    /// <c>opt_gnttab_max_version</c>): what a domain gets when its toolstack asks for the default, and, as in Xen 4.17's
    /// <c>grant_table_init</c>, the most any domain may have. Also what <c>XEN_SYSCTL_physinfo</c> reports as
    /// <c>XEN_SYSCTL_PHYSCAP_gnttab_v1</c>/<c>_v2</c> (<see cref="GrantTableLimits.MaxVersion"/>).
    /// </summary>
    public GrantTableLimits HostLimits { get; }

    // What the package's arrays are sized for: the bounds of HostLimits.
    private static readonly GrantTableLimits AbsoluteLimits = new(1024, 1024) { MaxVersion = GrantTableLimits.HighestVersion };

    // grant_table_init (Xen 4.17): at least INITIAL_NR_GRANT_FRAMES (1) grant frames, a version from 1, and nothing
    // above the ceiling.
    private static bool Within(GrantTableLimits l, GrantTableLimits ceiling) =>
        l.MaxGrantFrames >= 1 && l.MaxGrantFrames <= ceiling.MaxGrantFrames
        && l.MaxMaptrackFrames >= 0 && l.MaxMaptrackFrames <= ceiling.MaxMaptrackFrames
        && l.MaxVersion >= 1 && l.MaxVersion <= ceiling.MaxVersion;

    /// <summary>
    /// A domain's limits from what the toolstack asked for in <c>xen_domctl_createdomain</c>, by Xen 4.17's
    /// <c>grant_table_init</c>: a negative frame count is the host's (<see cref="HostLimits"/>); the version is
    /// <c>XEN_DOMCTL_GRANT_version(grant_opts)</c>, which has no default. False, where Xen answers -EINVAL, for a
    /// version of 0 or above the host's, fewer than 1 grant frame, or more grant or maptrack frames than the host's.
    /// (Unknown <c>grant_opts</c> bits are refused earlier, by <c>sanitise_domain_config</c>: the hypervisor's part.)
    /// </summary>
    /// <param name="maxGrantFrames"><c>max_grant_frames</c>; negative for the host's.</param>
    /// <param name="maxMaptrackFrames"><c>max_maptrack_frames</c>; negative for the host's.</param>
    /// <param name="maxVersion">The highest grant-table version the domain may use (the low 4 bits of <c>grant_opts</c>).</param>
    /// <param name="limits">The domain's limits, for <see cref="CreateDomain"/>, when true.</param>
    /// <returns>False when Xen would refuse the domain (-EINVAL).</returns>
    public bool TryCreateLimits(int maxGrantFrames, int maxMaptrackFrames, int maxVersion, out GrantTableLimits limits)
    {
        limits = new GrantTableLimits(
            maxGrantFrames < 0 ? HostLimits.MaxGrantFrames : maxGrantFrames,
            maxMaptrackFrames < 0 ? HostLimits.MaxMaptrackFrames : maxMaptrackFrames) { MaxVersion = maxVersion };
        if (!Within(limits, HostLimits))
        {
            limits = default;
            return false;
        }

        return true;
    }

    /// <summary>The frame reference counts: grant mappings hold references; free domain frames with <see cref="FrameReferences.Free"/>.</summary>
    public FrameReferences Frames { get; }

    /// <summary>The machine memory.</summary>
    public MachineMemory Memory => _memory;

    /// <summary>
    /// INVEPT for every virtual processor of a domain whose EPT lost a page (a grant unmapped, a status frame or a RAM
    /// page removed), called under the host's exclusive lock after the EPT change and before the page's reference is dropped or
    /// the page freed, as Xen flushes (<c>gnttab_flush_tlb</c>) before <c>unmap_common_complete</c>'s <c>put_page</c>:
    /// no processor of the domain can then still reach a page that another domain may be given. Also called after a
    /// grant mapping replaced a page at its slot. No other grant-table operation changes an EPT entry, so a hypervisor
    /// that sets this hook needs no flush of its own around the grant-table hypercalls. The host already
    /// invalidates the <see cref="GuestPhysicalMemory"/> caches of that EPT; this is for the processors' own caches
    /// (TLBs, translated code). It must not wait for anything a processor needs to leave guest execution. Null: the
    /// hypervisor flushes after each call returns, and a page whose last reference went is by then already free.
    /// If the hook throws, the exception reaches the caller and the pages that left the EPT before it stay held for
    /// good (their references and the grants' pins are never dropped): a failed flush leaves no proof that no
    /// processor still reaches them, so the host errs on the side of a leak rather than a page given away in use.
    /// </summary>
    public Action<GrantDomain>? FlushTranslations { get; set; }

    // Before a page the domain's EPT no longer maps is released (see FlushTranslations).
    private void FlushBeforeRelease(GrantDomain d) => FlushTranslations?.Invoke(d);

    // GNTTAB_UNMAP_BATCH_SIZE: unmaps whose mappings leave the EPT before one flush.
    internal const int UnmapBatchSize = 32;

    /// <summary>
    /// Gives a new domain its grant table (Xen's <c>grant_table_init</c>): version 1, one shared frame
    /// (allocated to <c>DOMID_XEN</c>, like Xen's xenheap frames shared with the guest), no mapping.
    /// </summary>
    /// <param name="domainId">The domain id; not in use by another live domain, below <c>DOMID_FIRST_RESERVED</c>.</param>
    /// <param name="ept">The domain's EPT.</param>
    /// <param name="limits">
    /// The domain's limits, within <see cref="HostLimits"/> (see <see cref="TryCreateLimits"/> for a toolstack's
    /// request); <see cref="HostLimits"/> when null.
    /// </param>
    /// <returns>The domain's grant state.</returns>
    /// <exception cref="ArgumentException">
    /// The id is reserved or in use (by a domain whose <see cref="DestroyDomain"/> has not returned too), the EPT is over
    /// other memory, or a limit is out of range: grant frames below 1, a negative maptrack count, a version other than 1
    /// or 2, or anything above <see cref="HostLimits"/>.
    /// </exception>
    /// <exception cref="MachineMemoryExhaustedException">No frame for the first table frame.</exception>
    public GrantDomain CreateDomain(ushort domainId, EptTables ept, GrantTableLimits? limits = null)
    {
        ArgumentNullException.ThrowIfNull(ept);
        GrantTableLimits l = limits ?? HostLimits;
        if (!Within(l, HostLimits))
        {
            throw new ArgumentException($"{l} is outside the host's limits {HostLimits}.", nameof(limits));
        }

        if (domainId >= DomainId.FirstReserved)
        {
            throw new ArgumentException($"d{domainId} is a reserved domain id.", nameof(domainId));
        }

        if (!ReferenceEquals(ept.Memory, _memory))
        {
            throw new ArgumentException("The EPT lives in other machine memory.", nameof(ept));
        }

        using (Exclusive())
        {
            // A dying domain keeps its id until DestroyDomain ends, as Xen keeps it until the domain is freed: its pins
            // in others' grants still carry that id.
            if (_byId[domainId] is not null || _dyingById[domainId] is not null)
            {
                throw new ArgumentException($"d{domainId} already has a grant table.", nameof(domainId));
            }

            var d = new GrantDomain(this, domainId, ept, l, ++_domainSerials);
            if (GrowTable(d, GrantDomain.InitialFrames) != 0)
            {
                throw new MachineMemoryExhaustedException("No frame for the first grant-table frame.");
            }

            Volatile.Write(ref _byId[domainId], d);
            return d;
        }
    }

    /// <summary>
    /// Whether guest frame <paramref name="gfn"/> of <paramref name="domain"/> holds a grant mapping (Xen's
    /// <c>p2m_is_grant</c>): such a page is not the domain's RAM, so a hypervisor refuses it where Xen checks
    /// <c>p2m_is_ram</c> (a foreign mapping of it by the control domain, for one).
    /// </summary>
    /// <param name="domain">A domain of this host.</param>
    /// <param name="gfn">The guest frame.</param>
    /// <returns>True while a grant mapping of the domain is at <paramref name="gfn"/>.</returns>
    public bool IsGrantMapping(GrantDomain domain, GuestFrameNumber gfn)
    {
        CheckCaller(domain);
        using (Exclusive())
        {
            return domain.GrantMappedGfns.ContainsKey(gfn.Value);
        }
    }

    /// <summary>
    /// Whether <paramref name="frame"/> is one of <paramref name="domain"/>'s grant-table frames, shared or v2 status
    /// (the frames <c>gnttab_map_frame</c> hands out for <c>XENMAPSPACE_grant_table</c>): such a page in the domain's
    /// physmap is the table's, not its RAM. Answered under the host's lock, so a concurrent
    /// <c>GNTTABOP_set_version</c> or growth of the table is seen before or after, never half made.
    /// </summary>
    /// <param name="domain">A domain of this host.</param>
    /// <param name="frame">Any machine frame.</param>
    /// <returns>True while <paramref name="frame"/> is one of the domain's table frames.</returns>
    public bool IsTableFrame(GrantDomain domain, MachineFrameNumber frame)
    {
        CheckCaller(domain);

        // Table frames belong to DOMID_XEN (AllocateFrames): any other frame is not one now, without the lock, which
        // would wait for every copy (a control domain asks this for each page it maps).
        if (!_memory.TryGetOwner(frame, out FrameOwner owner) || owner != FrameOwner.Hypervisor)
        {
            return false;
        }

        using (Exclusive())
        {
            return Array.IndexOf(domain.SharedFrames, frame, 0, domain.SharedFrameCount) >= 0
                || Array.IndexOf(domain.StatusFrames, frame, 0, domain.StatusFrameCount) >= 0;
        }
    }

    /// <summary>Finds a live domain's grant state.</summary>
    /// <param name="domainId">The domain id.</param>
    /// <param name="domain">The domain when found.</param>
    /// <returns>False when no live domain has this id.</returns>
    public bool TryGetDomain(ushort domainId, out GrantDomain domain)
    {
        domain = LookupById(domainId)!;
        return domain is not null;
    }

    /// <summary>
    /// Tears down a dying domain's grant state (Xen's <c>gnttab_release_mappings</c> then <c>grant_table_destroy</c>):
    /// every mapping it holds is removed from its EPT and unpinned in the granter's table; its table frames are
    /// unmapped and freed, and its table has no frame or entry left (<see cref="GrantDomain.SharedFrameCount"/> and
    /// <see cref="GrantDomain.EntryCount"/> are 0). Grants it gave that others still map keep their frames alive through
    /// <see cref="Frames"/> until those mappings go; the grantees unmap them as usual. Call after the domain's vCPUs stopped
    /// and before freeing its frames with <see cref="FrameReferences.Free"/>. The mappings are released 1,024 maptrack
    /// handles per hold of the host's lock (with a <see cref="FlushTranslations"/> each), as Xen's domain teardown
    /// preempts <c>gnttab_release_mappings</c>, so other domains' grant operations run in between; from the first hold
    /// the domain can no longer be found by its id nor map, and its id stays taken (<see cref="CreateDomain"/> refuses
    /// it) until the call returns.
    /// </summary>
    /// <param name="domain">The domain.</param>
    public void DestroyDomain(GrantDomain domain)
    {
        CheckCaller(domain);
        using (Exclusive())
        {
            if (domain.IsDestroyed)
            {
                return;
            }

            if (ReferenceEquals(_byId[domain.Id], domain))
            {
                Volatile.Write(ref _byId[domain.Id], null);
                _dyingById[domain.Id] = domain; // the id stays taken until the last hold below
            }

            domain.IsDying = true; // its maptrack only shrinks from now on: Map refuses it
        }

        // gnttab_release_mappings, preemptible as Xen's domain_teardown makes it: ReleaseChunk handles per hold, so the
        // other domains' grant operations and copies run between holds however many mappings the guest made.
        ReleaseMaptrack(domain);

        using (Exclusive())
        {
            if (domain.IsDestroyed)
            {
                return; // another thread's DestroyDomain of it finished meanwhile
            }

            for (int i = 0; i < domain.StatusFrameCount; i++)
            {
                UnmapTableFrame(domain, status: true, i);
                Frames.Free(domain.StatusFrames[i]);
            }

            for (int i = 0; i < domain.SharedFrameCount; i++)
            {
                UnmapTableFrame(domain, status: false, i);
                Frames.Free(domain.SharedFrames[i]);
            }

            // The table has no frames left: EntryCount is 0, so no reader reaches a freed frame through it.
            domain.SharedFrameCount = 0;
            domain.StatusFrameCount = 0;
            domain.IsDestroyed = true;
            if (ReferenceEquals(_dyingById[domain.Id], domain))
            {
                _dyingById[domain.Id] = null;
            }

            Volatile.Write(ref _destroyedDomains, _destroyedDomains + 1);
            GuestPhysicalMemory.InvalidateSingleContext(_memory, domain.Ept.Pointer);
        }
    }

    // rcu_lock_domain_by_id: DOMID_SELF is not accepted (map_grant_ref). One read, with or without the lock: a copy looks
    // domains up before it holds their copy words, and checks them again once it does (GrantTableHost.Exclusion.cs).
    private GrantDomain? LookupById(ushort domid) =>
        domid < _byId.Length ? Volatile.Read(ref _byId[domid]) : null;

    // rcu_lock_domain_by_any_id: DOMID_SELF is the caller.
    private GrantDomain? LookupByAnyId(GrantDomain caller, ushort domid) =>
        domid == DomainId.Self ? caller : LookupById(domid);

    internal void CheckCaller(GrantDomain caller)
    {
        ArgumentNullException.ThrowIfNull(caller);
        if (!ReferenceEquals(caller.Host, this))
        {
            throw new ArgumentException("The domain belongs to another grant-table host.", nameof(caller));
        }
    }
}
