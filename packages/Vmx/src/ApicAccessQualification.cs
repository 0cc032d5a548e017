namespace VmmKit.Vmx;

/// <summary>Exit qualification for APIC-access exits, exit reason 44 (SDM Vol. 3C §28.2.1, Table 28-6).</summary>
/// <param name="Value">The raw exit qualification.</param>
public readonly record struct ApicAccessQualification(ulong Value)
{
    /// <summary>Bits 11:0: the offset of the access within the APIC page (linear accesses only).</summary>
    public int Offset => (int)(Value & 0xFFF);

    /// <summary>Bits 15:12: the access type.</summary>
    public ApicAccessType AccessType => (ApicAccessType)((Value >> 12) & 0xF);

    /// <summary>Bit 16: the access was asynchronous to instruction execution (during event delivery).</summary>
    public bool IsAsynchronous => (Value & (1ul << 16)) != 0;
}
