namespace VmmKit.Vmx;

/// <summary>Exit qualification for control-register accesses, exit reason 28 (SDM Vol. 3C §28.2.1, Table 28-3).</summary>
/// <param name="Value">The raw exit qualification.</param>
public readonly record struct ControlRegisterAccessQualification(ulong Value)
{
    /// <summary>Bits 3:0: the control register (0 for CLTS and LMSW).</summary>
    public int ControlRegister => (int)(Value & 0xF);

    /// <summary>Bits 5:4: the access type.</summary>
    public ControlRegisterAccessType AccessType => (ControlRegisterAccessType)((Value >> 4) & 3);

    /// <summary>Bit 6: LMSW operand type — true for a memory operand, false for a register.</summary>
    public bool LmswOperandIsMemory => (Value & (1ul << 6)) != 0;

    /// <summary>Bits 11:8: the general-purpose register of MOV CR (0 = RAX … 15 = R15).</summary>
    public int GeneralPurposeRegister => (int)((Value >> 8) & 0xF);

    /// <summary>Bits 31:16: the LMSW source data.</summary>
    public ushort LmswSourceData => (ushort)(Value >> 16);

    /// <summary>Builds the qualification of a MOV to/from CR.</summary>
    public static ControlRegisterAccessQualification MovCr(int controlRegister, bool toCr, int generalPurposeRegister) =>
        new((uint)(controlRegister & 0xF) | (toCr ? 0ul : 1ul) << 4 | (ulong)(uint)(generalPurposeRegister & 0xF) << 8);

    /// <inheritdoc/>
    public override string ToString() => AccessType switch
    {
        ControlRegisterAccessType.MovToCr => $"mov cr{ControlRegister}, r{GeneralPurposeRegister}",
        ControlRegisterAccessType.MovFromCr => $"mov r{GeneralPurposeRegister}, cr{ControlRegister}",
        ControlRegisterAccessType.Clts => "clts",
        _ => $"lmsw 0x{LmswSourceData:x}{(LmswOperandIsMemory ? " (mem)" : "")}",
    };
}
