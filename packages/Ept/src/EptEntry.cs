using System.Runtime.CompilerServices;

namespace VmmKit.Ept;

/// <summary>
/// One 64-bit EPT paging-structure entry, at any level, in the SDM's bit layout
/// (Vol. 3C §29.3.2, Figure 29-1 and Tables 29-1 to 29-6: PML4E, PDPTE mapping 1 GiB or referencing a
/// page directory, PDE mapping 2 MiB or referencing a page table, PTE mapping 4 KiB).
/// </summary>
/// <remarks>
/// Bit 0 read, 1 write, 2 execute (supervisor execute under mode-based execute control), 5:3 memory type
/// (leaf only), 6 ignore PAT (leaf only), 7 page size (PDPTE/PDE: maps a page; reserved in a PML4E; ignored
/// in a PTE), 8 accessed, 9 dirty (leaf only), 10 user-mode execute (under mode-based execute control),
/// N-1:12 physical address (N-1:21 for 2 MiB pages, N-1:30 for 1 GiB pages), 51:N reserved, 63 suppress #VE
/// (leaf only). <see cref="MaxPhysicalAddress"/> fixes N.
/// </remarks>
/// <param name="Value">The raw entry as stored in the paging-structure frame.</param>
public readonly record struct EptEntry(ulong Value)
{
    /// <summary>The physical-address width N that this implementation supports (CPUID.80000008H:EAX[7:0]).</summary>
    public const int PhysicalAddressWidth = 46;

    /// <summary>Highest machine-physical address representable: 2^N - 1.</summary>
    public const ulong MaxPhysicalAddress = (1UL << PhysicalAddressWidth) - 1;

    /// <summary>Bit 0: reads allowed.</summary>
    public const ulong ReadBit = 1UL << 0;

    /// <summary>Bit 1: writes allowed.</summary>
    public const ulong WriteBit = 1UL << 1;

    /// <summary>Bit 2: instruction fetches allowed (supervisor-mode fetches under mode-based execute control).</summary>
    public const ulong ExecuteBit = 1UL << 2;

    /// <summary>Bits 5:3: EPT memory type of a leaf.</summary>
    public const ulong MemoryTypeMask = 7UL << MemoryTypeShift;

    /// <summary>Position of the memory-type field.</summary>
    public const int MemoryTypeShift = 3;

    /// <summary>Bit 6: ignore the guest PAT memory type (leaf only).</summary>
    public const ulong IgnorePatBit = 1UL << 6;

    /// <summary>Bit 7: in a PDPTE or PDE, the entry maps a 1 GiB or 2 MiB page instead of referencing a table.</summary>
    public const ulong LargePageBit = 1UL << 7;

    /// <summary>Bit 8: accessed flag (set by the processor when A/D flags are enabled in the EPTP).</summary>
    public const ulong AccessedBit = 1UL << 8;

    /// <summary>Bit 9: dirty flag of a leaf (set on writes when A/D flags are enabled in the EPTP).</summary>
    public const ulong DirtyBit = 1UL << 9;

    /// <summary>Bit 10: user-mode instruction fetches allowed (mode-based execute control for EPT).</summary>
    public const ulong UserExecuteBit = 1UL << 10;

    /// <summary>Bit 63: suppress #VE for EPT violations caused by this leaf.</summary>
    public const ulong SuppressVeBit = 1UL << 63;

    /// <summary>Bits N-1:12: the physical address of a 4 KiB page or of the next table.</summary>
    public const ulong AddressMask = MaxPhysicalAddress & ~Page.PageOffsetMask;

    /// <summary>Bits 51:N: reserved at every level (must be 0).</summary>
    public const ulong ReservedHighMask = ((1UL << 52) - 1) & ~MaxPhysicalAddress;

    /// <summary>The three permission bits, whose all-zero value makes an entry not present (unless bit 10 under mode-based execute control).</summary>
    public const ulong PermissionMask = ReadBit | WriteBit | ExecuteBit;

    /// <summary>True when any of bits 2:0 is set. Under mode-based execute control bit 10 also counts (see <see cref="IsPresentWith"/>).</summary>
    public bool IsPresent => (Value & PermissionMask) != 0;

    /// <summary>Bit 0.</summary>
    public bool Readable => (Value & ReadBit) != 0;

    /// <summary>Bit 1.</summary>
    public bool Writable => (Value & WriteBit) != 0;

    /// <summary>Bit 2.</summary>
    public bool Executable => (Value & ExecuteBit) != 0;

    /// <summary>Bit 10.</summary>
    public bool UserExecutable => (Value & UserExecuteBit) != 0;

    /// <summary>Bits 0, 1, 2 and 10 as <see cref="EptAccess"/>.</summary>
    public EptAccess Access => ToAccess(Value);

    /// <summary>Bits 5:3 (meaningful in a leaf; values 2, 3 and 7 are reserved).</summary>
    public EptMemoryType MemoryType => (EptMemoryType)((Value & MemoryTypeMask) >> MemoryTypeShift);

    /// <summary>Bit 6.</summary>
    public bool IgnorePat => (Value & IgnorePatBit) != 0;

    /// <summary>Bit 7.</summary>
    public bool IsLargePage => (Value & LargePageBit) != 0;

    /// <summary>Bit 8.</summary>
    public bool Accessed => (Value & AccessedBit) != 0;

    /// <summary>Bit 9.</summary>
    public bool Dirty => (Value & DirtyBit) != 0;

    /// <summary>Bit 63.</summary>
    public bool SuppressVe => (Value & SuppressVeBit) != 0;

    /// <summary>Bits N-1:12 as an address (for a large page the low reserved bits are included as stored).</summary>
    public ulong Address => Value & AddressMask;

    /// <summary>Bits N-1:12 as a machine frame number.</summary>
    public MachineFrameNumber Frame => new((Value & AddressMask) >> Page.PageShift);

    /// <summary>Presence as hardware decides it: bits 2:0, plus bit 10 when mode-based execute control is on.</summary>
    /// <param name="modeBasedExecuteControl">Whether the "mode-based execute control for EPT" VM-execution control is 1.</param>
    /// <returns>Whether the entry is present.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool IsPresentWith(bool modeBasedExecuteControl) =>
        (Value & (modeBasedExecuteControl ? PermissionMask | UserExecuteBit : PermissionMask)) != 0;

    /// <summary>An entry referencing the next-level table in <paramref name="table"/>, with every permission (the leaf restricts).</summary>
    /// <param name="table">The frame holding the next-level table.</param>
    /// <returns>The entry.</returns>
    public static EptEntry ForTable(MachineFrameNumber table) =>
        new((table.Address & AddressMask) | PermissionMask | UserExecuteBit);

    /// <summary>A leaf entry mapping the page that starts at <paramref name="frame"/>.</summary>
    /// <param name="frame">First frame of the page (aligned to 512 frames for 2 MiB, 262144 for 1 GiB).</param>
    /// <param name="access">Rights.</param>
    /// <param name="memoryType">Memory type (bits 5:3).</param>
    /// <param name="largePage">Sets bit 7: the entry is a PDPTE or PDE mapping a 1 GiB or 2 MiB page.</param>
    /// <returns>The entry.</returns>
    public static EptEntry ForPage(MachineFrameNumber frame, EptAccess access, EptMemoryType memoryType, bool largePage = false) =>
        new((frame.Address & AddressMask) | FromAccess(access) | ((ulong)memoryType << MemoryTypeShift) | (largePage ? LargePageBit : 0));

    /// <summary>This entry with bits 0, 1, 2 and 10 replaced by <paramref name="access"/>.</summary>
    /// <param name="access">The new rights.</param>
    /// <returns>The changed entry.</returns>
    public EptEntry WithAccess(EptAccess access) => new((Value & ~(PermissionMask | UserExecuteBit)) | FromAccess(access));

    /// <summary>This entry with bits 5:3 replaced.</summary>
    /// <param name="memoryType">The new memory type.</param>
    /// <returns>The changed entry.</returns>
    public EptEntry WithMemoryType(EptMemoryType memoryType) => new((Value & ~MemoryTypeMask) | ((ulong)memoryType << MemoryTypeShift));

    /// <summary>This entry with bit 6 set or cleared.</summary>
    /// <param name="ignorePat">The new value.</param>
    /// <returns>The changed entry.</returns>
    public EptEntry WithIgnorePat(bool ignorePat) => WithBit(IgnorePatBit, ignorePat);

    /// <summary>This entry with bit 7 set or cleared.</summary>
    /// <param name="largePage">The new value.</param>
    /// <returns>The changed entry.</returns>
    public EptEntry WithLargePage(bool largePage) => WithBit(LargePageBit, largePage);

    /// <summary>This entry with bit 8 set or cleared.</summary>
    /// <param name="accessed">The new value.</param>
    /// <returns>The changed entry.</returns>
    public EptEntry WithAccessed(bool accessed) => WithBit(AccessedBit, accessed);

    /// <summary>This entry with bit 9 set or cleared.</summary>
    /// <param name="dirty">The new value.</param>
    /// <returns>The changed entry.</returns>
    public EptEntry WithDirty(bool dirty) => WithBit(DirtyBit, dirty);

    /// <summary>This entry with bit 63 set or cleared.</summary>
    /// <param name="suppressVe">The new value.</param>
    /// <returns>The changed entry.</returns>
    public EptEntry WithSuppressVe(bool suppressVe) => WithBit(SuppressVeBit, suppressVe);

    /// <summary>This entry with bits N-1:12 replaced by the address of <paramref name="frame"/>.</summary>
    /// <param name="frame">The new frame.</param>
    /// <returns>The changed entry.</returns>
    public EptEntry WithFrame(MachineFrameNumber frame) => new((Value & ~AddressMask) | (frame.Address & AddressMask));

    /// <summary>Formats the entry as its raw value and decoded flags.</summary>
    /// <returns>A readable description.</returns>
    public override string ToString() =>
        $"0x{Value:x16} [{(Readable ? 'R' : '-')}{(Writable ? 'W' : '-')}{(Executable ? 'X' : '-')}{(UserExecutable ? 'U' : '-')}{(IsLargePage ? " PS" : "")}{(Accessed ? " A" : "")}{(Dirty ? " D" : "")} mt={(int)MemoryType} {Frame}]";

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static EptAccess ToAccess(ulong value) =>
        (EptAccess)((value & PermissionMask) | ((value & UserExecuteBit) >> 7));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static ulong FromAccess(EptAccess access) =>
        ((ulong)access & PermissionMask) | (((ulong)access & (ulong)EptAccess.UserExecute) << 7);

    private EptEntry WithBit(ulong bit, bool set) => new(set ? Value | bit : Value & ~bit);
}
