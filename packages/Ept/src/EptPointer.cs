namespace VmmKit.Ept;

/// <summary>
/// The extended-page-table pointer (EPTP), VM-execution control field 0x201A (SDM Vol. 3C §25.6.11, Table 25-9):
/// bits 2:0 memory type for the paging structures (0 UC or 6 WB), bits 5:3 page-walk length minus 1
/// (3 for 4-level, 4 for 5-level EPT), bit 6 enables accessed and dirty flags, bit 7 enables supervisor
/// shadow-stack access rights, bits 11:8 reserved, bits N-1:12 the root table, bits 63:N reserved.
/// </summary>
/// <param name="Value">The raw 64-bit EPTP.</param>
public readonly record struct EptPointer(ulong Value)
{
    private const ulong MemoryTypeMask = 0x7;
    private const int WalkLengthShift = 3;
    private const ulong AccessedDirtyBit = 1UL << 6;
    private const ulong SupervisorShadowStackBit = 1UL << 7;
    private const ulong ReservedMask = 0xF00UL | ~EptEntry.MaxPhysicalAddress;

    /// <summary>Bits 2:0: the memory type used to access the EPT paging structures.</summary>
    public EptMemoryType MemoryType => (EptMemoryType)(Value & MemoryTypeMask);

    /// <summary>Number of levels of the walk: bits 5:3 plus one (4 for a PML4 root, 5 for a PML5 root).</summary>
    public int PageWalkLength => (int)((Value >> WalkLengthShift) & 7) + 1;

    /// <summary>Bit 6: the processor sets accessed and dirty flags in EPT entries (SDM §29.3.5).</summary>
    public bool AccessedDirtyEnabled => (Value & AccessedDirtyBit) != 0;

    /// <summary>Bit 7: enable supervisor shadow-stack access rights.</summary>
    public bool SupervisorShadowStackEnabled => (Value & SupervisorShadowStackBit) != 0;

    /// <summary>Bits N-1:12: the frame holding the root (PML4 or PML5) table.</summary>
    public MachineFrameNumber Root => new((Value & EptEntry.AddressMask) >> Page.PageShift);

    /// <summary>
    /// The checks VM entry makes on the EPTP (SDM Vol. 3C §27.2.1.1): memory type UC or WB, walk length 4 or 5,
    /// reserved bits 11:8 and 63:N zero.
    /// </summary>
    public bool IsValid =>
        (MemoryType is EptMemoryType.Uncacheable or EptMemoryType.WriteBack)
        && PageWalkLength is 4 or 5
        && (Value & ReservedMask) == 0;

    /// <summary>Builds an EPTP.</summary>
    /// <param name="root">Frame of the root table.</param>
    /// <param name="accessedDirtyEnabled">Sets bit 6.</param>
    /// <param name="memoryType">Memory type of the paging structures; UC or WB.</param>
    /// <param name="pageWalkLength">4 or 5.</param>
    /// <returns>The EPTP.</returns>
    public static EptPointer Create(MachineFrameNumber root, bool accessedDirtyEnabled = false, EptMemoryType memoryType = EptMemoryType.WriteBack, int pageWalkLength = 4) =>
        new((root.Address & EptEntry.AddressMask)
            | ((ulong)memoryType & MemoryTypeMask)
            | ((ulong)((pageWalkLength - 1) & 7) << WalkLengthShift)
            | (accessedDirtyEnabled ? AccessedDirtyBit : 0));

    /// <summary>Formats the EPTP as its raw value and decoded fields.</summary>
    /// <returns>A readable description.</returns>
    public override string ToString() => $"eptp:0x{Value:x} [root {Root}, walk {PageWalkLength}, mt {(int)MemoryType}{(AccessedDirtyEnabled ? ", A/D" : "")}]";
}
