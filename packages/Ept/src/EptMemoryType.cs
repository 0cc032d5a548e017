namespace VmmKit.Ept;

/// <summary>
/// Memory types an EPT leaf entry (bits 5:3) or the EPTP (bits 2:0) may name (SDM Vol. 3C §29.3.7, §11.3).
/// Values 2, 3 and 7 are reserved: in a leaf entry they cause an EPT misconfiguration.
/// </summary>
public enum EptMemoryType : byte
{
    /// <summary>UC: uncacheable.</summary>
    Uncacheable = 0,

    /// <summary>WC: write combining.</summary>
    WriteCombining = 1,

    /// <summary>WT: write through.</summary>
    WriteThrough = 4,

    /// <summary>WP: write protected.</summary>
    WriteProtected = 5,

    /// <summary>WB: write back, the type of ordinary RAM.</summary>
    WriteBack = 6,
}
