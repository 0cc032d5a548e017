namespace VmmKit.Devices;

/// <summary>The outcome of an APIC MSR access (RDMSR/WRMSR of IA32_APIC_BASE, IA32_TSC_DEADLINE or an x2APIC register).</summary>
public enum ApicAccessResult
{
    /// <summary>The access completed.</summary>
    Ok,
    /// <summary>The access faults: the VMM injects #GP(0) and does not advance RIP (SDM Vol. 3A §11.12.1.2-3).</summary>
    GeneralProtection,
    /// <summary>The MSR is not one of the APIC's; the VMM handles it elsewhere.</summary>
    NotApicMsr,
}
