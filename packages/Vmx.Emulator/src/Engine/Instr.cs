using System.Runtime.InteropServices;

namespace VmmKit.Vmx.Emulator.Engine;

/// <summary>
/// A pre-decoded instruction: the handler to run and its operands, filled once from Iced's
/// <c>Instruction</c> by <see cref="BlockDecoder"/>. 64 bytes, fixed layout.
/// </summary>
/// <remarks>
/// Operand slots <see cref="Op0"/>..<see cref="Op2"/> hold, per Iced operand kind:
/// a general register (<see cref="Gpr8High"/> rule for AH..BH, otherwise 0..15),
/// an XMM register index 0..15, a segment register index (Iced order), or <see cref="MemoryOperand"/>
/// when that operand is the memory operand (described by Mem* fields). Immediates go to
/// <see cref="Imm"/> (first) and <see cref="Imm2"/> (second, e.g. ENTER's level); a near branch
/// target goes to <see cref="Imm"/>.
/// </remarks>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct Instr
{
    /// <summary>Marker in an operand slot meaning "this operand is the memory operand".</summary>
    public const byte MemoryOperand = 0xFE;
    /// <summary>Marker meaning "no register" (memory base/index, absent operand).</summary>
    public const byte NoRegister = 0xFF;
    /// <summary>8-bit register slots 16..19 are AH, CH, DH, BH (high byte of GPR 0..3).</summary>
    public const byte Gpr8High = 16;

    /// <summary>Handler (see HandlerTable).</summary>
    public delegate*<Core, Instr*, int> Handler;
    /// <summary>RIP of this instruction.</summary>
    public ulong Ip;
    /// <summary>First immediate, sign/zero-extended as Iced reports it, or the branch target.</summary>
    public ulong Imm;
    /// <summary>Second immediate, or a far branch selector.</summary>
    public ulong Imm2;
    /// <summary>Memory displacement (absolute target for RIP-relative operands).</summary>
    public long Disp;
    /// <summary>Iced <c>Code</c> value.</summary>
    public ushort Code;
    /// <summary>Instruction length in bytes.</summary>
    public byte Length;
    /// <summary>Operand size in bytes of operand 0 (or the instruction's natural size).</summary>
    public byte OpSize;
    /// <summary>Operand slot 0.</summary>
    public byte Op0;
    /// <summary>Operand slot 1.</summary>
    public byte Op1;
    /// <summary>Operand slot 2.</summary>
    public byte Op2;
    /// <summary>Size in bytes of operand 1 (movzx/movsx sources, shift counts...).</summary>
    public byte Op1Size;
    /// <summary>Memory base GPR or <see cref="NoRegister"/>.</summary>
    public byte MemBase;
    /// <summary>Memory index GPR or <see cref="NoRegister"/>.</summary>
    public byte MemIndex;
    /// <summary>log2 of the index scale.</summary>
    public byte MemScaleShift;
    /// <summary>Effective segment (Iced order ES=0..GS=5) of the memory operand.</summary>
    public byte MemSeg;
    /// <summary>Address size in bytes (2, 4, 8).</summary>
    public byte AddrSize;
    /// <summary>Handler-specific byte from the table (ALU op, condition code, ...).</summary>
    public byte Sub;
    /// <summary><see cref="InstrFlags"/>.</summary>
    public byte Flags;
    /// <summary>Size in bytes of the memory operand (Iced MemorySize), 0 when none.</summary>
    public byte MemSize;

    /// <summary>RIP of the next instruction.</summary>
    public readonly ulong NextIp => Ip + Length;
}

/// <summary>Bits of <see cref="Instr.Flags"/>.</summary>
internal static class InstrFlags
{
    /// <summary>REP / REPE prefix (F3).</summary>
    public const byte Rep = 1;
    /// <summary>REPNE prefix (F2).</summary>
    public const byte Repne = 2;
    /// <summary>LOCK prefix.</summary>
    public const byte Lock = 4;
    /// <summary>The instruction was decoded in 64-bit mode.</summary>
    public const byte Long = 8;
}
