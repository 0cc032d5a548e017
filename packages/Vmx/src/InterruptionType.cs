namespace VmmKit.Vmx;

/// <summary>The interruption type in bits 10:8 of interruption-information fields (SDM Vol. 3C §25.8.3, §25.9.2).</summary>
public enum InterruptionType
{
    /// <summary>External interrupt.</summary>
    ExternalInterrupt = 0,
    /// <summary>Reserved encoding.</summary>
    Reserved = 1,
    /// <summary>Non-maskable interrupt.</summary>
    Nmi = 2,
    /// <summary>Hardware exception (e.g. #PF).</summary>
    HardwareException = 3,
    /// <summary>Software interrupt (INT n).</summary>
    SoftwareInterrupt = 4,
    /// <summary>Privileged software exception (INT1).</summary>
    PrivilegedSoftwareException = 5,
    /// <summary>Software exception (INT3 or INTO).</summary>
    SoftwareException = 6,
    /// <summary>Other event (e.g. MTF pending on VM entry).</summary>
    OtherEvent = 7,
}
