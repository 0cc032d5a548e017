namespace VmmKit.Ept;

/// <summary>
/// Page and frame geometry shared by machine memory, EPT and guest-physical memory.
/// The sizes are those of Intel 64 paging (SDM Vol. 3A §4.1 and Vol. 3C §29.3): 4 KiB pages,
/// 2 MiB and 1 GiB large pages, 512 eight-byte entries per paging-structure frame.
/// </summary>
public static class Page
{
    /// <summary>Size in bytes of a 4 KiB page or machine frame.</summary>
    public const int PageSize = 4096;

    /// <summary>log2 of <see cref="PageSize"/>: the shift between an address and its frame number.</summary>
    public const int PageShift = 12;

    /// <summary>Mask of the offset bits of an address inside its 4 KiB page.</summary>
    public const ulong PageOffsetMask = PageSize - 1;

    /// <summary>Size in bytes of a 2 MiB large page (an EPT PDE with bit 7 set).</summary>
    public const ulong LargePageSize = 1UL << 21;

    /// <summary>Size in bytes of a 1 GiB huge page (an EPT PDPTE with bit 7 set).</summary>
    public const ulong HugePageSize = 1UL << 30;

    /// <summary>Number of 8-byte entries in one paging-structure frame.</summary>
    public const int EntriesPerTable = 512;
}
