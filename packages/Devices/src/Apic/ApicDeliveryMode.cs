namespace VmmKit.Devices;

/// <summary>Delivery mode, bits 10:8 of the ICR and of LVT entries (SDM Vol. 3A §11.6.1, Figure 11-12; §11.5.1).</summary>
public enum ApicDeliveryMode
{
    /// <summary>000: the vector goes to the destinations' IRR.</summary>
    Fixed = 0,
    /// <summary>001: like fixed, to the destination with the lowest priority (ICR only).</summary>
    LowestPriority = 1,
    /// <summary>010: system management interrupt (not emulated).</summary>
    Smi = 2,
    /// <summary>011: reserved.</summary>
    Reserved3 = 3,
    /// <summary>100: non-maskable interrupt; the vector is ignored.</summary>
    Nmi = 4,
    /// <summary>101: INIT.</summary>
    Init = 5,
    /// <summary>110: start-up IPI (ICR only).</summary>
    StartUp = 6,
    /// <summary>111: external interrupt from an 8259-compatible controller (LVT LINT only).</summary>
    ExtInt = 7,
}
