using System.Runtime.CompilerServices;

namespace VmmKit.Ept;

/// <summary>
/// A small direct-mapped cache of guest-frame → host-page translations with the rights they were filled with,
/// the software counterpart of a TLB for EPT-only (guest-physical) translations (SDM Vol. 3C §29.4.1).
/// It is flushed only by invalidation (INVEPT semantics), never by table edits.
/// </summary>
internal unsafe struct TranslationCache
{
    public const int EntryCount = 512;
    private const ulong ValidTag = 1UL << 63;

    private Entry[] _entries;

    /// <summary>Creates an empty cache.</summary>
    public static TranslationCache Create() => new() { _entries = new Entry[EntryCount] };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly bool TryLookup(ulong gfn, EptAccess needed, out byte* page)
    {
        ref Entry e = ref _entries[(int)(gfn & (EntryCount - 1))];
        if (e.Tag == (gfn | ValidTag) && (e.Rights & needed) == needed)
        {
            page = e.Host;
            return true;
        }

        page = null;
        return false;
    }

    public readonly void Fill(ulong gfn, byte* page, EptAccess rights)
    {
        ref Entry e = ref _entries[(int)(gfn & (EntryCount - 1))];
        e.Tag = gfn | ValidTag;
        e.Host = page;
        e.Rights = rights;
    }

    public readonly void Flush() => Array.Clear(_entries);

    private struct Entry
    {
        public ulong Tag;
        public byte* Host;
        public EptAccess Rights;
    }
}
