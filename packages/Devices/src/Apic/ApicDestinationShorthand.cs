namespace VmmKit.Devices;

/// <summary>Destination shorthand, ICR bits 19:18 (SDM Vol. 3A §11.6.1).</summary>
public enum ApicDestinationShorthand
{
    /// <summary>00: the destination field selects the targets.</summary>
    None = 0,
    /// <summary>01: the sender only (fixed delivery only).</summary>
    Self = 1,
    /// <summary>10: every APIC, the sender included.</summary>
    AllIncludingSelf = 2,
    /// <summary>11: every APIC but the sender.</summary>
    AllExcludingSelf = 3,
}
