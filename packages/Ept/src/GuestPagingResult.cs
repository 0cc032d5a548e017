namespace VmmKit.Ept;

/// <summary>How a guest page walk ended (<see cref="GuestPageWalker"/>).</summary>
public enum GuestPagingResult
{
    /// <summary>The linear address translated; the guest-physical address is valid.</summary>
    Translated,

    /// <summary>The walk faults: the processor would deliver #PF with the error code the walker returned (SDM Vol. 3A §4.7).</summary>
    PageFault,

    /// <summary>The linear address is not canonical under 4-level paging: #GP (or #SS for a stack reference, SDM Vol. 3A §3.3.7.1).</summary>
    NonCanonical,

    /// <summary>Reading or updating a paging-structure entry failed (an EPT violation or misconfiguration on the 2-D walk); the <see cref="IGuestPagingStructures"/> implementation holds the details.</summary>
    StructureFault,
}
