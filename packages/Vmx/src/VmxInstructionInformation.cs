namespace VmmKit.Vmx;

/// <summary>
/// The VM-exit instruction-information field for VMX instructions, INVEPT/INVPCID/INVVPID, descriptor-table
/// instructions (LGDT … STR), RDRAND/RDSEED and INS/OUTS (SDM Vol. 3C §28.2.5, Tables 28-8 to 28-14).
/// Which bits are meaningful depends on the exit reason; the memory-operand bits describe
/// segment:[base + index * scale + displacement], the displacement being the exit qualification.
/// </summary>
/// <param name="Value">The raw 32-bit field.</param>
public readonly record struct VmxInstructionInformation(uint Value)
{
    /// <summary>Bits 1:0: the scaling of the index register (the scale factor is 1 &lt;&lt; Scaling).</summary>
    public int Scaling => (int)(Value & 3);

    /// <summary>Bits 6:3: register operand 1 (VMREAD/VMWRITE register operand, RDRAND/RDSEED destination).</summary>
    public int Register1 => (int)((Value >> 3) & 0xF);

    /// <summary>Bits 9:7: address size (0 = 16-bit, 1 = 32-bit, 2 = 64-bit); also the INS/OUTS address size.</summary>
    public int AddressSize => (int)((Value >> 7) & 7);

    /// <summary>Bit 10: the operand is a register (true) or memory (false), for VMREAD/VMWRITE and LLDT/LTR/SLDT/STR.</summary>
    public bool IsRegisterOperand => (Value & (1u << 10)) != 0;

    /// <summary>Bit 11: operand size for LGDT/LIDT/SGDT/SIDT and RDRAND/RDSEED (0 = 16/32-bit, 1 = 32/64-bit per table).</summary>
    public int OperandSize => (int)((Value >> 11) & 3);

    /// <summary>Bits 17:15: the segment register of a memory operand (0 = ES, 1 = CS, 2 = SS, 3 = DS, 4 = FS, 5 = GS).</summary>
    public int SegmentRegister => (int)((Value >> 15) & 7);

    /// <summary>Bits 21:18: the index register.</summary>
    public int IndexRegister => (int)((Value >> 18) & 0xF);

    /// <summary>Bit 22: the index register is invalid (absent).</summary>
    public bool IndexRegisterInvalid => (Value & (1u << 22)) != 0;

    /// <summary>Bits 26:23: the base register.</summary>
    public int BaseRegister => (int)((Value >> 23) & 0xF);

    /// <summary>Bit 27: the base register is invalid (absent).</summary>
    public bool BaseRegisterInvalid => (Value & (1u << 27)) != 0;

    /// <summary>Bits 29:28: instruction identity for descriptor-table exits (GDTR/IDTR: 0 SGDT, 1 SIDT, 2 LGDT, 3 LIDT; LDTR/TR: 0 SLDT, 1 STR, 2 LLDT, 3 LTR).</summary>
    public int InstructionIdentity => (int)((Value >> 28) & 3);

    /// <summary>Bits 31:28: register operand 2 (VMREAD/VMWRITE field-encoding register; INVEPT/INVPCID/INVVPID type register).</summary>
    public int Register2 => (int)(Value >> 28);
}
