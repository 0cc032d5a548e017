using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace VmmKit.Vmx.Emulator.Engine;

/// <summary>
/// One software-TLB entry: a linear page with one tag per access kind and the host address
/// delta (host = linear + <see cref="Addend"/>). Fixed layout (docs/architecture.md, "The emulated processor"), padded to
/// 64 bytes: one cache line per entry, and an index that is a shift (translated code addresses [TLB + (page &amp; mask) * 64]
/// without a multiply). A tag equals the page-aligned linear address when that access kind is allowed without a slow path.
/// </summary>
[StructLayout(LayoutKind.Sequential, Size = 64)]
internal struct TlbEntry
{
    /// <summary>Page-aligned linear address valid for reads, or <see cref="SoftTlb.Invalid"/>.</summary>
    public ulong ReadTag;
    /// <summary>Page-aligned linear address valid for writes, or <see cref="SoftTlb.Invalid"/>.</summary>
    public ulong WriteTag;
    /// <summary>Page-aligned linear address valid for fetches, or <see cref="SoftTlb.Invalid"/>.</summary>
    public ulong FetchTag;
    /// <summary>Host address minus linear address.</summary>
    public long Addend;
    /// <summary>Guest-physical page address the entry maps to.</summary>
    public ulong PhysicalPage;
}

/// <summary>
/// The bookkeeping that follows the <see cref="SoftTlb.Entries"/> entries in the same allocation: which entries were filled
/// since the last flush (so a flush touches only those), and the translation context they were filled under.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct TlbFillLog
{
    /// <summary>Entries listed in <see cref="Filled"/>; <see cref="SoftTlb.Entries"/> or more means "flush them all".</summary>
    public int Count;
    /// <summary>Whether <see cref="Context"/> describes the state every valid entry was filled under (cleared by a flush).</summary>
    public bool ContextValid;
    /// <summary>The translation context recorded by <c>Core.RefreshMode</c> (see <see cref="TranslationContext"/>).</summary>
    public TranslationContext Context;
    /// <summary>Indices of entries that became valid since the last flush.</summary>
    public fixed ushort Filled[SoftTlb.Entries];
}

/// <summary>
/// Everything a software-TLB entry's rights and mapping depend on besides the paging structures themselves: the paging
/// mode and rights controls (CR0.PE/PG/WP/CD, CR4's paging bits, EFER.LMA/NXE), CR3, the CPL the access was checked at and
/// whether SMAP lets supervisor data accesses reach user pages (CR4.SMAP and RFLAGS.AC). SDM Vol. 3A §4.10.2.2: a TLB
/// entry holds the translation and the rights; the rights an access gets depend on CPL, CR0.WP, EFER.NXE and SMEP/SMAP.
/// </summary>
internal readonly record struct TranslationContext(ulong Cr0, ulong Cr3, ulong Cr4, ulong Efer, int Cpl, bool SmapOverride);

/// <summary>Direct-mapped software TLB in native memory (<see cref="Entries"/> entries, then a <see cref="TlbFillLog"/>).</summary>
internal static unsafe class SoftTlb
{
    /// <summary>Number of entries (power of two).</summary>
    public const int Entries = 512;
    /// <summary>Tag that never matches (bit 0 set: linear page addresses are 4 KiB aligned).</summary>
    public const ulong Invalid = 1;

    /// <summary>Allocates and clears a TLB (the entries followed by their <see cref="TlbFillLog"/>).</summary>
    public static TlbEntry* Allocate()
    {
        nuint size = (nuint)(Entries * sizeof(TlbEntry) + sizeof(TlbFillLog));
        var p = (TlbEntry*)NativeMemory.AlignedAlloc(size, 64);
        NativeMemory.Clear(p, size);
        Log(p)->Count = Entries; // nothing known yet: the first flush clears every entry
        Flush(p);
        return p;
    }

    /// <summary>The fill log that follows the entries of <paramref name="tlb"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TlbFillLog* Log(TlbEntry* tlb) => (TlbFillLog*)(tlb + Entries);

    /// <summary>Whether entry <paramref name="e"/> has no valid tag (a fill then makes it valid: see <see cref="NoteFilled"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool IsEmpty(TlbEntry* e) => e->ReadTag == Invalid && e->WriteTag == Invalid && e->FetchTag == Invalid;

    /// <summary>Records that entry <paramref name="index"/>, empty before, now holds a valid tag.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void NoteFilled(TlbEntry* tlb, int index)
    {
        TlbFillLog* log = Log(tlb);
        if (log->Count < Entries) log->Filled[log->Count] = (ushort)index;
        log->Count++; // past Entries (an entry emptied by DropWrites and refilled is listed twice): the flush clears all
    }

    /// <summary>
    /// Invalidates every entry: those listed in the fill log (every entry that became valid since the last flush), or
    /// all of them when the log overflowed. Forgets the translation context.
    /// </summary>
    public static void Flush(TlbEntry* tlb)
    {
        TlbFillLog* log = Log(tlb);
        if (log->Count >= Entries)
        {
            for (int i = 0; i < Entries; i++) Invalidate(tlb + i);
        }
        else
        {
            for (int k = 0; k < log->Count; k++) Invalidate(tlb + log->Filled[k]);
        }
        log->Count = 0;
        log->ContextValid = false;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Invalidate(TlbEntry* e)
    {
        e->ReadTag = Invalid;
        e->WriteTag = Invalid;
        e->FetchTag = Invalid;
    }

    /// <summary>Drops write permission for every entry that maps guest-physical page <paramref name="physicalPage"/>.</summary>
    public static void DropWrites(TlbEntry* tlb, ulong physicalPage)
    {
        for (int i = 0; i < Entries; i++)
        {
            if (tlb[i].PhysicalPage == physicalPage)
            {
                tlb[i].WriteTag = Invalid;
            }
        }
    }
}
