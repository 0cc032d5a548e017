namespace VmmKit.Devices;

/// <summary>The local APIC's operating mode, from IA32_APIC_BASE bits 11 (EN) and 10 (EXTD) (SDM Vol. 3A §11.12.1, Table 11-5).</summary>
public enum ApicMode
{
    /// <summary>EN = 0: the APIC is globally disabled.</summary>
    Disabled,
    /// <summary>EN = 1, EXTD = 0: xAPIC mode, registers in the 4 KiB MMIO page at the APIC base.</summary>
    XApic,
    /// <summary>EN = 1, EXTD = 1: x2APIC mode, registers in MSRs 0x800-0x8FF.</summary>
    X2Apic,
}
