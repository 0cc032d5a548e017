namespace VmmKit.Vmx;

/// <summary>
/// The format shared by the VM-entry interruption-information field, the VM-exit interruption-information field
/// and the IDT-vectoring information field (SDM Vol. 3C §25.8.3 Table 25-17, §25.9.2 Tables 25-19 and 25-20).
/// </summary>
/// <param name="Value">The raw 32-bit field.</param>
public readonly record struct InterruptionInformation(uint Value)
{
    /// <summary>Bit 31: the field is valid.</summary>
    public const uint ValidBit = 1u << 31;
    /// <summary>Bit 11: an error code is delivered (entry) or was pushed (exit).</summary>
    public const uint ErrorCodeValidBit = 1u << 11;
    /// <summary>Bit 12 (exit information only): NMI unblocking due to IRET.</summary>
    public const uint NmiUnblockingDueToIretBit = 1u << 12;

    /// <summary>Bits 7:0: the vector of the interrupt or exception.</summary>
    public byte Vector => (byte)Value;

    /// <summary>Bits 10:8: the interruption type.</summary>
    public InterruptionType Type => (InterruptionType)((Value >> 8) & 7);

    /// <summary>Bit 11: an error code is delivered (entry) / was delivered (exit).</summary>
    public bool ErrorCodeValid => (Value & ErrorCodeValidBit) != 0;

    /// <summary>Bit 12 of VM-exit interruption information: NMI unblocking due to IRET.</summary>
    public bool NmiUnblockingDueToIret => (Value & NmiUnblockingDueToIretBit) != 0;

    /// <summary>Bits 30:12 of the VM-entry field must be zero (SDM §27.2.1.3); true when any is set.</summary>
    public bool HasReservedEntryBits => (Value & 0x7FFF_F000u) != 0;

    /// <summary>Bit 31: valid.</summary>
    public bool IsValid => (Value & ValidBit) != 0;

    /// <summary>Builds a valid interruption-information value.</summary>
    public static InterruptionInformation Create(byte vector, InterruptionType type, bool errorCodeValid = false) =>
        new(ValidBit | (errorCodeValid ? ErrorCodeValidBit : 0) | ((uint)type & 7) << 8 | vector);

    /// <inheritdoc/>
    public override string ToString() => IsValid ? $"{Type} vector {Vector}{(ErrorCodeValid ? " +errcode" : "")}" : "invalid";
}
