using VmmKit.Ept;

namespace VmmKit.GrantTable;

/// <summary>
/// One domain's grant state, created by <see cref="GrantTableHost.CreateDomain"/>: its grant table (version,
/// shared frames, v2 status frames, active entries) as granter, and its maptrack (the grants of others it
/// maps) as grantee. All changes go through <see cref="GrantTableHost"/>; this class exposes what a
/// hypervisor or a test may observe.
/// </summary>
public sealed class GrantDomain
{
    internal const ulong InvalidGfn = ulong.MaxValue;
    internal const int InitialFrames = 1; // INITIAL_NR_GRANT_FRAMES

    internal MachineFrameNumber[] SharedFrames;
    internal ulong[] SharedGfns;
    internal MachineFrameNumber[] StatusFrames;
    internal ulong[] StatusGfns;
    internal ActiveGrantEntry[] Active = [];
    internal MaptrackEntry[] Maptrack = [];   // at least MaptrackLimit entries; the rest unused
    internal int MaptrackLimit;                // handles given out so far (Xen's maptrack_limit): a frame's worth at a time
    internal int MaptrackFreeHead = -1;
    internal int MaptrackInUse;
    internal readonly Dictionary<ulong, uint> GrantMappedGfns;   // gfn -> maptrack handle
    internal readonly Dictionary<ulong, (bool Status, int Index)> TableGfns;
    internal FrameCacheEntry[] FrameCache = NoFrameCache; // direct-mapped, a power of two; made at the first fill
    internal static readonly FrameCacheEntry[] NoFrameCache = new FrameCacheEntry[1]; // never written: every lookup misses
    internal const int FrameCacheInitialSize = 4096; // 64 KiB per domain: 16 MiB of own frames stay resolved
    internal const int FrameCacheMaxSize = 65536;    // 1 MiB per domain: 256 MiB of own frames
    internal int FrameCacheFills;             // fills since the cache last grew or was weighed (under FrameCacheLock)
    internal int FrameCacheConflicts;         // of them, fills that evicted another frame's entry still valid
    internal long FrameCacheGeneration = -1;  // the EPT generation and frame-free epoch the cache's current stamp stands for
    internal long FrameCacheEpoch = -1;
    internal ulong FrameCacheStamp;           // entries tagged with another stamp are stale; 0 never tags a valid entry
    internal int FrameCacheSeq;               // odd while the cache changes: a lookup that saw it odd or moved misses
    internal readonly Lock FrameCacheLock = new(); // one thread at a time fills the cache
    internal int CopyWord;                    // 1 while a copy holds this domain's grants alone (GrantTableHost.Exclusion.cs)
    internal int CopiesShare;                 // 1: copies share the word, marking their slots (one found it held alone)
    private int _version = 1;
    private int _sharedFrameCount;

    /// <summary>
    /// A resolved guest frame of this domain's own RAM (16 bytes, four per cache line): valid while its stamp is the
    /// domain's current one, which changes whenever the EPT generation or the frame-free epoch it stands for moved
    /// (any remap, unmap or free bumps one of them).
    /// </summary>
    internal struct FrameCacheEntry
    {
        public const int StampShift = 36;            // guest frames are below 2^36 (48-bit guest-physical addresses)
        public const ulong StampLimit = 1UL << 28;   // stamps 1 .. 2^28-1, then the cache is cleared and starts again
        public const ulong WritableBit = 1UL << 63;  // in MfnAndAccess; the machine frame is in the low 52 bits

        public ulong Tag;           // gfn | stamp << StampShift
        public ulong MfnAndAccess;
    }

    /// <summary>The host whose domain this is: its methods refuse any other host's domain.</summary>
    internal GrantTableHost Host { get; }

    /// <summary>Order of creation on the host (1, 2, ...): copies take domains' copy words in this order.</summary>
    internal long Serial { get; }

    internal GrantDomain(GrantTableHost host, ushort id, EptTables ept, GrantTableLimits limits, long serial)
    {
        Host = host;
        Serial = serial;
        Id = id;
        Ept = ept;
        Limits = limits;
        var gfnHash = new GuestFrameHash(); // the guest chooses these keys: a keyed hash, not ulong's own
        GrantMappedGfns = new(gfnHash);
        TableGfns = new(gfnHash);
        SharedFrames = new MachineFrameNumber[limits.MaxGrantFrames];
        SharedGfns = new ulong[limits.MaxGrantFrames];
        int maxStatus = StatusFramesFor(limits.MaxGrantFrames);
        StatusFrames = new MachineFrameNumber[maxStatus];
        StatusGfns = new ulong[maxStatus];
        Array.Fill(SharedGfns, InvalidGfn);
        Array.Fill(StatusGfns, InvalidGfn);
    }

    /// <summary>The domain id (<c>domid_t</c>).</summary>
    public ushort Id { get; }

    /// <summary>The domain's EPT, where grant mappings and grant-table frames appear.</summary>
    public EptTables Ept { get; }

    /// <summary>The domain's limits.</summary>
    public GrantTableLimits Limits { get; }

    /// <summary>The grant-table version in force: 1 (initially) or 2.</summary>
    public int Version
    {
        get => _version;
        internal set
        {
            _version = value;
            UpdateEntryCount();
        }
    }

    /// <summary>Number of shared grant-table frames (<c>nr_grant_frames</c>).</summary>
    public int SharedFrameCount
    {
        get => _sharedFrameCount;
        internal set
        {
            _sharedFrameCount = value;
            UpdateEntryCount();
        }
    }

    /// <summary>Number of v2 status frames (<c>nr_status_frames</c>); 0 under version 1.</summary>
    public int StatusFrameCount { get; internal set; }

    /// <summary>Number of grant entries: 512 per frame under v1, 256 under v2.</summary>
    /// <remarks>Stored (kept by the setters of <see cref="Version"/> and <see cref="SharedFrameCount"/>): every copy claim reads it.</remarks>
    public int EntryCount { get; private set; }

    private void UpdateEntryCount() =>
        EntryCount = _sharedFrameCount * (_version == 1 ? GrantEntryV1.PerFrame : GrantEntryV2.PerFrame);

    /// <summary>
    /// Set by <see cref="GrantTableHost.DestroyDomain"/> before it releases the domain's mappings over several holds of
    /// the exclusive lock: the domain maps nothing from then on. Under the exclusive lock.
    /// </summary>
    internal bool IsDying { get; set; }

    /// <summary>True once <see cref="GrantTableHost.DestroyDomain"/> ran: the domain can no longer be found, its table frames are gone.</summary>
    public bool IsDestroyed { get; internal set; }

    /// <summary>Number of grant mappings this domain holds (maptrack entries in use).</summary>
    public int MappingCount => MaptrackInUse;

    /// <summary>Number of maptrack entries allocated so far (a multiple of <see cref="GrantTableLimits.MaptrackPerFrame"/>).</summary>
    public int MaptrackCapacity => MaptrackLimit;

    /// <summary>The machine frame of shared grant-table frame <paramref name="index"/>.</summary>
    /// <param name="index">Below <see cref="SharedFrameCount"/>.</param>
    /// <returns>The frame.</returns>
    public MachineFrameNumber GetSharedFrame(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, SharedFrameCount);
        return SharedFrames[index];
    }

    /// <summary>The machine frame of v2 status frame <paramref name="index"/>.</summary>
    /// <param name="index">Below <see cref="StatusFrameCount"/>.</param>
    /// <returns>The frame.</returns>
    public MachineFrameNumber GetStatusFrame(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, StatusFrameCount);
        return StatusFrames[index];
    }

    /// <summary>The pin count word of grant <paramref name="gref"/> (Xen's <c>act->pin</c>: host-write, host-read, device-write, device-read bytes).</summary>
    /// <param name="gref">A grant reference.</param>
    /// <returns>0 when the grant is not in use or out of range.</returns>
    public uint GetPinCount(uint gref) => gref < (uint)Active.Length ? Active[gref].Pin : 0;

    /// <summary>Status frames needed for <paramref name="grantFrames"/> shared frames under v2 (<c>grant_to_status_frames</c>).</summary>
    /// <param name="grantFrames">Shared frames.</param>
    /// <returns>The number of status frames.</returns>
    public static int StatusFramesFor(int grantFrames) =>
        ((grantFrames * GrantEntryV2.PerFrame) + GrantEntryV2.StatusPerFrame - 1) / GrantEntryV2.StatusPerFrame;

    /// <inheritdoc/>
    public override string ToString() => $"d{Id} grant table v{Version}, {SharedFrameCount} frame(s)";
}
