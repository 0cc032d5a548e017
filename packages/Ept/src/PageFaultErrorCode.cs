namespace VmmKit.Ept;

/// <summary>The error code of a page fault (SDM Vol. 3A §4.7, figure 4-12).</summary>
[Flags]
public enum PageFaultErrorCode : uint
{
    /// <summary>No bit: a not-present page at a supervisor read.</summary>
    None = 0,

    /// <summary>P (bit 0): a protection violation rather than a not-present page.</summary>
    Present = 1,

    /// <summary>W/R (bit 1): the access was a write.</summary>
    Write = 2,

    /// <summary>U/S (bit 2): the access was a user-mode access.</summary>
    User = 4,

    /// <summary>RSVD (bit 3): a reserved bit was set in a paging-structure entry.</summary>
    Reserved = 8,

    /// <summary>I/D (bit 4): the access was an instruction fetch (reported with SMEP, or with PAE/4-level paging and EFER.NXE).</summary>
    InstructionFetch = 16,
}
