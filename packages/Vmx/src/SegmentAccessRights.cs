namespace VmmKit.Vmx;

/// <summary>
/// Guest segment access-rights format of the VMCS (SDM Vol. 3C §25.4.1, Table 25-2): bits 3:0 type, 4 S,
/// 6:5 DPL, 7 P, 12 AVL, 13 L, 14 D/B, 15 G, 16 unusable; bits 11:8 and 31:17 are reserved.
/// </summary>
/// <param name="Value">The raw 32-bit field.</param>
public readonly record struct SegmentAccessRights(uint Value)
{
    /// <summary>Bit 16: the segment is unusable.</summary>
    public const uint UnusableBit = 1u << 16;
    /// <summary>Reserved bits 11:8 and 31:17 (must be zero for a usable segment).</summary>
    public const uint ReservedMask = 0xFFFE_0F00u;

    /// <summary>Flat 32-bit code: execute/read, accessed, S=1, DPL 0, present, D=1, G=1 (0xC09B).</summary>
    public static SegmentAccessRights FlatCode32 => new(0xC09B);
    /// <summary>Flat data: read/write, accessed, S=1, DPL 0, present, D/B=1, G=1 (0xC093).</summary>
    public static SegmentAccessRights FlatData => new(0xC093);
    /// <summary>64-bit code: execute/read, accessed, present, L=1, D=0, G=1 (0xA09B).</summary>
    public static SegmentAccessRights Code64 => new(0xA09B);
    /// <summary>Busy 32-bit TSS, present (0x8B).</summary>
    public static SegmentAccessRights BusyTss32 => new(0x8B);
    /// <summary>An unusable segment (only bit 16 set).</summary>
    public static SegmentAccessRights Unusable => new(UnusableBit);

    /// <summary>Bits 3:0: segment type.</summary>
    public int Type => (int)(Value & 0xF);
    /// <summary>Bit 4: descriptor type (true = code or data, false = system).</summary>
    public bool IsCodeOrData => (Value & 0x10) != 0;
    /// <summary>Bits 6:5: descriptor privilege level.</summary>
    public int Dpl => (int)((Value >> 5) & 3);
    /// <summary>Bit 7: present.</summary>
    public bool Present => (Value & 0x80) != 0;
    /// <summary>Bit 13: 64-bit mode active (CS only).</summary>
    public bool Long => (Value & (1u << 13)) != 0;
    /// <summary>Bit 14: default operation size (D/B).</summary>
    public bool DefaultBig => (Value & (1u << 14)) != 0;
    /// <summary>Bit 15: granularity.</summary>
    public bool Granularity => (Value & (1u << 15)) != 0;
    /// <summary>Bit 16: segment unusable.</summary>
    public bool IsUnusable => (Value & UnusableBit) != 0;
    /// <summary>True when a reserved bit is set.</summary>
    public bool HasReservedBits => (Value & ReservedMask) != 0;
}
