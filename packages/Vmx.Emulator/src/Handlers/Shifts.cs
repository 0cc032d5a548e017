using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Handlers;

/// <summary>Shifts and rotates (SDM Vol. 2 SAL/SAR/SHL/SHR, RCL/RCR/ROL/ROR, SHLD, SHRD).</summary>
internal static unsafe class Shifts
{
    /// <summary>Operation in <see cref="Instr.Sub"/> (the /r digit of opcodes C0/C1/D0-D3).</summary>
    public const byte Rol = 0, Ror = 1, Rcl = 2, Rcr = 3, Shl = 4, Shr = 5, Sal = 6, Sar = 7;

    private static int Count(Core c, Instr* i)
    {
        // Count operand: CL register, an immediate, or the implicit 1 (Iced reports "1" as Immediate8).
        ulong raw = i->Op1 == Instr.NoRegister ? i->Imm : c.GetReg(1, 1);
        return (int)(raw & (i->OpSize == 8 ? 0x3FUL : 0x1FUL));
    }

    /// <summary>Fast path: SHL/SHR/SAR of a 32/64-bit register; everything else goes to <see cref="Shift"/>.</summary>
    public static int ShiftFast(Core c, Instr* i)
    {
        int size = i->OpSize;
        byte op = i->Sub;
        if (i->Op0 == Instr.MemoryOperand || size < 4 || op < Shl) return Shift(c, i);
        int count = (int)((i->Op1 == Instr.NoRegister ? i->Imm : c.S.Gpr[1]) & (size == 8 ? 0x3FUL : 0x1FUL));
        if (count == 0)
        {
            if (size == 4) c.S.Gpr[i->Op0] = (uint)c.S.Gpr[i->Op0]; // a 32-bit destination is still written
            return ExecStatus.Continue;
        }
        ref CpuState s = ref c.S;
        int bits = size * 8;
        ulong v = size == 8 ? s.Gpr[i->Op0] : (uint)s.Gpr[i->Op0];
        ulong r, cf, of = 0;
        if (op == Shr)
        {
            r = v >> count;
            cf = (v >> (count - 1)) & 1;
            if (count == 1) of = (v >> (bits - 1)) & 1;
        }
        else if (op == Sar)
        {
            long sv = size == 8 ? (long)v : (int)v;
            r = size == 8 ? (ulong)(sv >> count) : (uint)(sv >> count);
            cf = (ulong)(sv >> (count - 1)) & 1;
        }
        else
        {
            r = size == 8 ? v << count : (uint)(v << count);
            cf = (v >> (bits - count)) & 1;
            of = ((r >> (bits - 1)) ^ cf) & 1;
        }
        s.Gpr[i->Op0] = r;
        LazyFlags.SetEager(ref s, RflagsBits.Arith, cf | (of << 11) | LazyFlags.ZsP(r, size));
        return ExecStatus.Continue;
    }

    /// <summary>Group-2 shift/rotate of op0 by 1, CL or imm8.</summary>
    public static int Shift(Core c, Instr* i)
    {
        int size = i->OpSize;
        int count = Count(c, i);
        if (!c.ReadOp0(i, out ulong v)) return ExecStatus.Event;
        if (count == 0)
        {
            // SDM: a masked count of 0 affects no flags; a 32-bit register destination is still zero-extended.
            if (i->Op0 != Instr.MemoryOperand && i->OpSize == 4) c.SetReg(i->Op0, 4, v);
            return ExecStatus.Continue;
        }
        int bits = size * 8;
        ulong mask = Arithmetic.SizeMask(size);
        v &= mask;
        ref CpuState s = ref c.S;
        ulong r;
        ulong flags = 0;
        ulong affected;
        ulong msb = 1UL << (bits - 1);
        switch (i->Sub)
        {
            case Shl:
            case Sal:
                {
                    r = count < 64 ? (v << count) & mask : 0;
                    ulong cf = count <= bits ? (count == 0 ? 0 : (v >> (bits - count)) & 1) : 0;
                    flags = cf | LazyFlags.ZsP(r, size);
                    // OF (defined for count 1) = MSB(result) XOR CF; hardware computes the same for larger counts.
                    if (((r & msb) != 0) ^ (cf != 0)) flags |= RflagsBits.OF;
                    affected = RflagsBits.Arith;
                    break;
                }
            case Shr:
                {
                    r = v >> count;
                    ulong cf = (v >> (count - 1)) & 1;
                    flags = cf | LazyFlags.ZsP(r, size);
                    // OF = MSB of the original operand (count 1).
                    if ((v & msb) != 0 && count == 1) flags |= RflagsBits.OF;
                    affected = RflagsBits.Arith;
                    break;
                }
            case Sar:
                {
                    long sv = Arithmetic.SignExtend(v, size);
                    r = (ulong)(sv >> count) & mask;
                    ulong cf = (ulong)(sv >> (count - 1)) & 1;
                    flags = cf | LazyFlags.ZsP(r, size);
                    affected = RflagsBits.Arith;
                    break;
                }
            case Rol:
                {
                    int n = count % bits;
                    r = n == 0 ? v : ((v << n) | (v >> (bits - n))) & mask;
                    ulong cf = r & 1;
                    flags = cf;
                    if (((r & msb) != 0) ^ (cf != 0)) flags |= RflagsBits.OF;
                    affected = RflagsBits.CF | RflagsBits.OF;
                    break;
                }
            case Ror:
                {
                    int n = count % bits;
                    r = n == 0 ? v : ((v >> n) | (v << (bits - n))) & mask;
                    ulong cf = (r >> (bits - 1)) & 1;
                    flags = cf;
                    if ((((r >> (bits - 1)) ^ (r >> (bits - 2))) & 1) != 0) flags |= RflagsBits.OF;
                    affected = RflagsBits.CF | RflagsBits.OF;
                    break;
                }
            case Rcl:
                {
                    int n = size <= 2 ? count % (bits + 1) : count;
                    ulong cf = LazyFlags.Carry(ref s) ? 1UL : 0;
                    r = v;
                    for (int k = 0; k < n; k++)
                    {
                        ulong top = (r >> (bits - 1)) & 1;
                        r = ((r << 1) | cf) & mask;
                        cf = top;
                    }
                    flags = cf;
                    if (((r & msb) != 0) ^ (cf != 0)) flags |= RflagsBits.OF;
                    affected = RflagsBits.CF | RflagsBits.OF;
                    break;
                }
            default: // Rcr
                {
                    int n = size <= 2 ? count % (bits + 1) : count;
                    ulong cf = LazyFlags.Carry(ref s) ? 1UL : 0;
                    r = v;
                    for (int k = 0; k < n; k++)
                    {
                        ulong low = r & 1;
                        r = (r >> 1) | (cf << (bits - 1));
                        cf = low;
                    }
                    flags = cf;
                    if ((((r >> (bits - 1)) ^ (r >> (bits - 2))) & 1) != 0) flags |= RflagsBits.OF;
                    affected = RflagsBits.CF | RflagsBits.OF;
                    break;
                }
        }
        if (!c.WriteOp0(i, r)) return ExecStatus.Event;
        LazyFlags.SetEager(ref s, affected, flags);
        return ExecStatus.Continue;
    }

    /// <summary>SHLD (Sub = 0) / SHRD (Sub = 1) r/m, r, imm8|CL.</summary>
    public static int DoubleShift(Core c, Instr* i)
    {
        int size = i->OpSize;
        int bits = size * 8;
        ulong raw = i->Op2 == Instr.NoRegister ? i->Imm : c.GetReg(1, 1);
        int count = (int)(raw & (size == 8 ? 0x3FUL : 0x1FUL));
        if (!c.ReadOp0(i, out ulong dst)) return ExecStatus.Event;
        if (count == 0)
        {
            // No flags change, but a 32-bit register destination is still written (zero-extended).
            if (i->Op0 != Instr.MemoryOperand && size == 4) c.SetReg(i->Op0, 4, dst);
            return ExecStatus.Continue;
        }
        ulong src = c.GetReg(i->Op1, size);
        ulong mask = Arithmetic.SizeMask(size);
        dst &= mask;
        ulong r, cf;
        if (size == 2)
        {
            // 16-bit with count > 16 is undefined; model the 48-bit concatenation hardware uses.
            if (i->Sub == 0)
            {
                ulong wide = (dst << 32) | (src << 16) | dst;
                r = (wide << count >> 32) & 0xFFFF;
                cf = (wide << (count - 1) >> 47) & 1;
            }
            else
            {
                ulong wide = dst | (src << 16) | (dst << 32);
                r = (wide >> count) & 0xFFFF;
                cf = (wide >> (count - 1)) & 1;
            }
        }
        else if (i->Sub == 0)
        {
            r = ((dst << count) | (count == bits ? 0 : (src & mask) >> (bits - count))) & mask;
            cf = (dst >> (bits - count)) & 1;
        }
        else
        {
            r = ((dst >> count) | ((src << (bits - count)) & mask)) & mask;
            cf = (dst >> (count - 1)) & 1;
        }
        if (!c.WriteOp0(i, r)) return ExecStatus.Event;
        ulong flags = cf | LazyFlags.ZsP(r, size);
        // OF: sign change (defined for count 1).
        if ((((r ^ dst) >> (bits - 1)) & 1) != 0) flags |= RflagsBits.OF;
        LazyFlags.SetEager(ref c.S, RflagsBits.Arith, flags);
        return ExecStatus.Continue;
    }
}
