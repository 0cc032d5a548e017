namespace VmmKit.Vmx;

/// <summary>Exit qualification for I/O instructions, exit reason 30 (SDM Vol. 3C §28.2.1, Table 28-5).</summary>
/// <param name="Value">The raw exit qualification.</param>
public readonly record struct IoInstructionQualification(ulong Value)
{
    /// <summary>Bits 2:0 plus one: the access size in bytes (1, 2 or 4).</summary>
    public int Size => (int)(Value & 7) + 1;

    /// <summary>Bit 3: true for IN/INS, false for OUT/OUTS.</summary>
    public bool IsIn => (Value & (1ul << 3)) != 0;

    /// <summary>Bit 4: a string instruction (INS/OUTS).</summary>
    public bool IsString => (Value & (1ul << 4)) != 0;

    /// <summary>Bit 5: REP prefixed.</summary>
    public bool IsRep => (Value & (1ul << 5)) != 0;

    /// <summary>Bit 6: the port is an immediate operand (false: in DX).</summary>
    public bool IsImmediate => (Value & (1ul << 6)) != 0;

    /// <summary>Bits 31:16: the port number.</summary>
    public ushort Port => (ushort)(Value >> 16);

    /// <summary>Builds a qualification.</summary>
    public static IoInstructionQualification Create(ushort port, int size, bool isIn, bool isString = false, bool isRep = false, bool isImmediate = false) =>
        new((ulong)(uint)((size - 1) & 7) | (isIn ? 1ul << 3 : 0) | (isString ? 1ul << 4 : 0) | (isRep ? 1ul << 5 : 0) | (isImmediate ? 1ul << 6 : 0) | (ulong)port << 16);

    /// <inheritdoc/>
    public override string ToString() => $"{(IsIn ? "in" : "out")}{(IsString ? "s" : "")}{(IsRep ? " rep" : "")} port 0x{Port:x} size {Size}{(IsImmediate ? " imm" : " dx")}";
}
