namespace VmmKit.Vmx;

/// <summary>IA32_VMX_BASIC (MSR 0x480; SDM Vol. 3D Appendix A.1).</summary>
/// <param name="Value">The MSR value.</param>
public readonly record struct VmxBasic(ulong Value)
{
    /// <summary>Bits 30:0: the VMCS revision identifier.</summary>
    public uint RevisionIdentifier => (uint)Value & 0x7FFF_FFFF;

    /// <summary>Bits 44:32: bytes to allocate for the VMXON region and any VMCS region (at most 4096).</summary>
    public int VmcsRegionSize => (int)((Value >> 32) & 0x1FFF);

    /// <summary>Bit 48: VMXON, VMCS and referenced structures are limited to 32-bit physical addresses.</summary>
    public bool PhysicalAddressesLimitedTo32Bits => (Value & (1ul << 48)) != 0;

    /// <summary>Bit 49: dual-monitor treatment of SMIs and SMM is supported.</summary>
    public bool DualMonitorTreatment => (Value & (1ul << 49)) != 0;

    /// <summary>Bits 53:50: memory type for the VMCS and structures it references (6 = write-back).</summary>
    public int MemoryType => (int)((Value >> 50) & 0xF);

    /// <summary>Bit 54: VM exits due to INS/OUTS report instruction information.</summary>
    public bool InsOutsInformation => (Value & (1ul << 54)) != 0;

    /// <summary>Bit 55: default-1 controls may be 0 (the IA32_VMX_TRUE_*_CTLS MSRs exist).</summary>
    public bool TrueControls => (Value & (1ul << 55)) != 0;

    /// <summary>Bit 56: VM entry may deliver hardware exceptions with or without an error code regardless of vector.</summary>
    public bool NoErrorCodeConsistencyCheck => (Value & (1ul << 56)) != 0;
}
