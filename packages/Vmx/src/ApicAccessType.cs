namespace VmmKit.Vmx;

/// <summary>Bits 15:12 of the APIC-access exit qualification (SDM Vol. 3C §28.2.1, Table 28-6).</summary>
public enum ApicAccessType
{
    /// <summary>Linear access for a data read during instruction execution.</summary>
    LinearRead = 0,
    /// <summary>Linear access for a data write during instruction execution.</summary>
    LinearWrite = 1,
    /// <summary>Linear access for an instruction fetch.</summary>
    LinearInstructionFetch = 2,
    /// <summary>Linear access (read or write) during event delivery.</summary>
    LinearDuringEventDelivery = 3,
    /// <summary>Guest-physical access during event delivery.</summary>
    GuestPhysicalDuringEventDelivery = 10,
    /// <summary>Guest-physical access for an instruction fetch or during instruction execution.</summary>
    GuestPhysicalInstructionFetchOrExecution = 15,
}
