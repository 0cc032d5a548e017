using System.Runtime.InteropServices;

namespace VmmKit.Vmx.Emulator.Engine;

/// <summary>
/// One software-TLB entry: a linear page with one tag per access kind and the host address
/// delta (host = linear + <see cref="Addend"/>). 40 bytes, fixed layout (docs/architecture.md, "The emulated processor"): a tag
/// equals the page-aligned linear address when that access kind is allowed without a slow path.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
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

/// <summary>Direct-mapped software TLB in native memory (<see cref="Entries"/> entries).</summary>
internal static unsafe class SoftTlb
{
    /// <summary>Number of entries (power of two).</summary>
    public const int Entries = 512;
    /// <summary>Tag that never matches (bit 0 set: linear page addresses are 4 KiB aligned).</summary>
    public const ulong Invalid = 1;

    /// <summary>Allocates and clears a TLB.</summary>
    public static TlbEntry* Allocate()
    {
        var p = (TlbEntry*)NativeMemory.AlignedAlloc((nuint)(Entries * sizeof(TlbEntry)), 64);
        Flush(p);
        return p;
    }

    /// <summary>Invalidates every entry.</summary>
    public static void Flush(TlbEntry* tlb)
    {
        for (int i = 0; i < Entries; i++)
        {
            tlb[i].ReadTag = Invalid;
            tlb[i].WriteTag = Invalid;
            tlb[i].FetchTag = Invalid;
        }
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
