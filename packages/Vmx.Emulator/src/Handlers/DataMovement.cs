using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Handlers;

/// <summary>Data transfer (SDM Vol. 1 §7.3.1): MOV, MOVZX/MOVSX/MOVSXD, LEA, XCHG, CMPXCHG*, XADD, BSWAP, MOVBE, CBW..CQO.</summary>
internal static unsafe class DataMovement
{
    /// <summary>MOV op0, op1|imm.</summary>
    public static int Mov(Core c, Instr* i)
    {
        int size = i->OpSize;
        ulong v;
        if (i->Op1 == Instr.NoRegister) v = i->Imm;
        else if (i->Op1 != Instr.MemoryOperand) v = c.GetReg(i->Op1, size);
        else if (!c.Read(c.LinearAddress(i), size, out v)) return ExecStatus.Event;
        if (i->Op0 != Instr.MemoryOperand) { c.SetReg(i->Op0, size, v); return ExecStatus.Continue; }
        return c.Write(c.LinearAddress(i), size, v) ? ExecStatus.Continue : ExecStatus.Event;
    }

    /// <summary>Fast MOV r32/r64, r32/r64|imm and 32/64-bit loads and stores through the TLB fast path.</summary>
    public static int MovRegFast(Core c, Instr* i)
    {
        if (i->OpSize < 4) return Mov(c, i);
        if (i->Op1 == Instr.MemoryOperand)
        {
            ulong lin = c.LinearAddress(i);
            TlbEntry* e = c.Tlb + ((lin >> 12) & (SoftTlb.Entries - 1));
            if (e->ReadTag != (lin & ~0xFFFUL) || (lin & 0xFFF) > 4096UL - i->OpSize) return Mov(c, i);
            byte* p = (byte*)(e->Addend + (long)lin);
            c.S.Gpr[i->Op0] = i->OpSize == 8 ? *(ulong*)p : *(uint*)p;
            return ExecStatus.Continue;
        }
        if (i->Op0 == Instr.MemoryOperand)
        {
            ulong lin = c.LinearAddress(i);
            TlbEntry* e = c.Tlb + ((lin >> 12) & (SoftTlb.Entries - 1));
            if (e->WriteTag != (lin & ~0xFFFUL) || (lin & 0xFFF) > 4096UL - i->OpSize) return Mov(c, i);
            byte* p = (byte*)(e->Addend + (long)lin);
            ulong stored = i->Op1 == Instr.NoRegister ? i->Imm : c.S.Gpr[i->Op1];
            if (i->OpSize == 8) *(ulong*)p = stored; else *(uint*)p = (uint)stored;
            return ExecStatus.Continue;
        }
        ref CpuState s = ref c.S;
        ulong v = i->Op1 == Instr.NoRegister ? i->Imm : s.Gpr[i->Op1];
        s.Gpr[i->Op0] = i->OpSize == 8 ? v : (uint)v;
        return ExecStatus.Continue;
    }

    /// <summary>MOV r/m, Sreg: stores the selector (zero-extended into a register).</summary>
    public static int MovFromSreg(Core c, Instr* i)
    {
        ulong sel = c.S.Segment(i->Op1).Selector;
        if (i->Op0 != Instr.MemoryOperand) { c.SetReg(i->Op0, i->OpSize, sel); return ExecStatus.Continue; }
        return c.Write(c.LinearAddress(i), 2, sel) ? ExecStatus.Continue : ExecStatus.Event;
    }

    /// <summary>MOVZX (Sub = 0) / MOVSX, MOVSXD (Sub = 1).</summary>
    public static int MovExtend(Core c, Instr* i)
    {
        int srcSize = i->Op1Size;
        if (!c.ReadOp1(i, out ulong v)) return ExecStatus.Event;
        if (i->Sub == 1) v = (ulong)Arithmetic.SignExtend(v, srcSize);
        c.SetReg(i->Op0, i->OpSize, v);
        return ExecStatus.Continue;
    }

    /// <summary>LEA: effective address, truncated to the operand size.</summary>
    public static int Lea(Core c, Instr* i)
    {
        c.SetReg(i->Op0, i->OpSize, c.EffectiveAddress(i));
        return ExecStatus.Continue;
    }

    /// <summary>XCHG op0, op1.</summary>
    public static int Xchg(Core c, Instr* i)
    {
        int size = i->OpSize;
        if (i->Op0 == Instr.MemoryOperand || i->Op1 == Instr.MemoryOperand)
        {
            int reg = i->Op0 == Instr.MemoryOperand ? i->Op1 : i->Op0;
            ulong lin = c.LinearAddress(i);
            if (!c.Read(lin, size, out ulong m)) return ExecStatus.Event;
            if (!c.Write(lin, size, c.GetReg(reg, size))) return ExecStatus.Event;
            c.SetReg(reg, size, m);
            return ExecStatus.Continue;
        }
        ulong a = c.GetReg(i->Op0, size), b = c.GetReg(i->Op1, size);
        c.SetReg(i->Op0, size, b);
        c.SetReg(i->Op1, size, a);
        return ExecStatus.Continue;
    }

    /// <summary>CMPXCHG r/m, r: compare accumulator with op0 (SDM CMPXCHG; the destination is always written for memory).</summary>
    public static int Cmpxchg(Core c, Instr* i)
    {
        int size = i->OpSize;
        ulong lin = 0;
        ulong dst;
        bool mem = i->Op0 == Instr.MemoryOperand;
        if (mem)
        {
            lin = c.LinearAddress(i);
            if (!c.Read(lin, size, out dst)) return ExecStatus.Event;
        }
        else dst = c.GetReg(i->Op0, size);
        ulong acc = c.GetReg(0, size);
        ulong mask = Arithmetic.SizeMask(size);
        bool equal = (acc & mask) == (dst & mask);
        ulong newDst = equal ? c.GetReg(i->Op1, size) : dst;
        if (mem) { if (!c.Write(lin, size, newDst)) return ExecStatus.Event; }
        else if (equal) c.SetReg(i->Op0, size, newDst); // a failed compare does not write a register destination
        if (!equal) c.SetReg(0, size, dst);
        LazyFlags.Set(ref c.S, LazyFlagOp.Sub, size, acc - dst, acc, dst);
        return ExecStatus.Continue;
    }

    /// <summary>CMPXCHG8B (OpSize 8) / CMPXCHG16B (OpSize 16) m.</summary>
    public static int Cmpxchg8b16b(Core c, Instr* i)
    {
        if (i->Op0 != Instr.MemoryOperand) return c.RaiseUD();
        ref CpuState s = ref c.S;
        ulong lin = c.LinearAddress(i);
        bool wide = i->Code == (ushort)Iced.Intel.Code.Cmpxchg16b_m128;
        if (wide)
        {
            if ((lin & 15) != 0) return c.RaiseGP0(); // SDM: m128 must be 16-byte aligned
            if (!c.Read128(lin, out ulong lo, out ulong hi)) return ExecStatus.Event;
            bool eq = lo == s.Gpr[0] && hi == s.Gpr[2];
            if (eq) { if (!c.Write128(lin, s.Gpr[3], s.Gpr[1])) return ExecStatus.Event; }
            else
            {
                if (!c.Write128(lin, lo, hi)) return ExecStatus.Event;
                s.Gpr[0] = lo; s.Gpr[2] = hi;
            }
            LazyFlags.SetEager(ref s, RflagsBits.ZF, eq ? RflagsBits.ZF : 0);
            return ExecStatus.Continue;
        }
        if (!c.Read(lin, 8, out ulong m)) return ExecStatus.Event;
        ulong edxeax = ((ulong)(uint)s.Gpr[2] << 32) | (uint)s.Gpr[0];
        bool equal = m == edxeax;
        if (!c.Write(lin, 8, equal ? ((ulong)(uint)s.Gpr[1] << 32) | (uint)s.Gpr[3] : m)) return ExecStatus.Event;
        if (!equal)
        {
            c.SetReg(0, 4, (uint)m);
            c.SetReg(2, 4, m >> 32);
        }
        LazyFlags.SetEager(ref s, RflagsBits.ZF, equal ? RflagsBits.ZF : 0);
        return ExecStatus.Continue;
    }

    /// <summary>XADD r/m, r.</summary>
    public static int Xadd(Core c, Instr* i)
    {
        int size = i->OpSize;
        if (!c.ReadOp0(i, out ulong dst)) return ExecStatus.Event;
        ulong src = c.GetReg(i->Op1, size);
        ulong sum = dst + src;
        if (!c.WriteOp0(i, sum)) return ExecStatus.Event;
        c.SetReg(i->Op1, size, dst);
        if (i->Op0 != Instr.MemoryOperand) c.SetReg(i->Op0, size, sum); // op0 written last when both are registers
        LazyFlags.Set(ref c.S, LazyFlagOp.Add, size, sum, dst, src);
        return ExecStatus.Continue;
    }

    /// <summary>BSWAP r32/r64 (16-bit form: the SDM leaves it undefined; hardware zeroes the low word).</summary>
    public static int Bswap(Core c, Instr* i)
    {
        ulong v = c.GetReg(i->Op0, i->OpSize);
        ulong r = i->OpSize switch
        {
            8 => System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(v),
            4 => System.Buffers.Binary.BinaryPrimitives.ReverseEndianness((uint)v),
            _ => 0,
        };
        c.SetReg(i->Op0, i->OpSize, r);
        return ExecStatus.Continue;
    }

    /// <summary>MOVBE r, m / m, r.</summary>
    public static int Movbe(Core c, Instr* i)
    {
        int size = i->OpSize;
        static ulong Swap(ulong v, int size) => size switch
        {
            8 => System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(v),
            4 => System.Buffers.Binary.BinaryPrimitives.ReverseEndianness((uint)v),
            _ => System.Buffers.Binary.BinaryPrimitives.ReverseEndianness((ushort)v),
        };
        if (i->Op0 == Instr.MemoryOperand)
        {
            return c.Write(c.LinearAddress(i), size, Swap(c.GetReg(i->Op1, size), size)) ? ExecStatus.Continue : ExecStatus.Event;
        }
        if (!c.Read(c.LinearAddress(i), size, out ulong v)) return ExecStatus.Event;
        c.SetReg(i->Op0, size, Swap(v, size));
        return ExecStatus.Continue;
    }

    /// <summary>CBW/CWDE/CDQE: sign-extend the accumulator's lower half (Sub = destination size).</summary>
    public static int ConvertAccumulator(Core c, Instr* i)
    {
        int size = i->Sub;
        ulong v = (ulong)Arithmetic.SignExtend(c.GetReg(0, size / 2), size / 2);
        c.SetReg(0, size, v);
        return ExecStatus.Continue;
    }

    /// <summary>CWD/CDQ/CQO: rDX = sign of rAX (Sub = size).</summary>
    public static int ConvertToDouble(Core c, Instr* i)
    {
        int size = i->Sub;
        long v = Arithmetic.SignExtend(c.GetReg(0, size), size);
        c.SetReg(2, size, v < 0 ? ulong.MaxValue : 0);
        return ExecStatus.Continue;
    }

    /// <summary>NOP forms, PAUSE, prefetches, fences: no architectural effect here.</summary>
    public static int Nop(Core c, Instr* i) => ExecStatus.Continue;
}
