namespace VmmKit.Vmx;

/// <summary>Exit qualification for MOV DR, exit reason 29 (SDM Vol. 3C §28.2.1, Table 28-4).</summary>
/// <param name="Value">The raw exit qualification.</param>
public readonly record struct MovDrQualification(ulong Value)
{
    /// <summary>Bits 2:0: the debug register.</summary>
    public int DebugRegister => (int)(Value & 7);

    /// <summary>Bit 4: true for MOV from DR, false for MOV to DR.</summary>
    public bool IsMovFromDr => (Value & (1ul << 4)) != 0;

    /// <summary>Bits 11:8: the general-purpose register.</summary>
    public int GeneralPurposeRegister => (int)((Value >> 8) & 0xF);

    /// <inheritdoc/>
    public override string ToString() => IsMovFromDr ? $"mov r{GeneralPurposeRegister}, dr{DebugRegister}" : $"mov dr{DebugRegister}, r{GeneralPurposeRegister}";
}
