using System.Numerics;
using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Handlers;

/// <summary>Bit instructions (SDM Vol. 1 §7.3.6-7.3.7): BT/BTS/BTR/BTC, BSF/BSR, TZCNT/LZCNT/POPCNT.</summary>
internal static unsafe class Bits
{
    /// <summary>BT (Sub = 0), BTS (1), BTR (2), BTC (3) r/m, r|imm8. A register bit offset addresses a bit string in memory.</summary>
    public static int BitTest(Core c, Instr* i)
    {
        int size = i->OpSize;
        int bits = size * 8;
        ulong lin = 0;
        ulong v;
        int bit;
        bool mem = i->Op0 == Instr.MemoryOperand;
        if (i->Op1 == Instr.NoRegister)
        {
            bit = (int)(i->Imm & (ulong)(bits - 1));
            if (mem) lin = c.LinearAddress(i);
        }
        else
        {
            ulong off = c.GetReg(i->Op1, size);
            if (mem)
            {
                // SDM BT: memory operand with a register offset: signed bit offset into a bit string.
                long signedOff = Arithmetic.SignExtend(off, size);
                long unit = signedOff >> (size == 2 ? 4 : size == 4 ? 5 : 6);
                lin = (c.SegBase[i->MemSeg] + ((c.EffectiveAddress(i) + (ulong)(unit * size)) & Arithmetic.SizeMask(i->AddrSize))) & c.LinearMask;
                bit = (int)(off & (ulong)(bits - 1));
            }
            else bit = (int)(off & (ulong)(bits - 1));
        }
        if (mem) { if (!c.Read(lin, size, out v)) return ExecStatus.Event; }
        else v = c.GetReg(i->Op0, size);
        ulong cf = (v >> bit) & 1;
        ulong r = i->Sub switch
        {
            1 => v | (1UL << bit),
            2 => v & ~(1UL << bit),
            3 => v ^ (1UL << bit),
            _ => v,
        };
        if (i->Sub != 0)
        {
            if (mem) { if (!c.Write(lin, size, r)) return ExecStatus.Event; }
            else c.SetReg(i->Op0, size, r);
        }
        LazyFlags.SetEager(ref c.S, RflagsBits.CF, cf);
        return ExecStatus.Continue;
    }

    /// <summary>BSF (Sub = 0) / BSR (Sub = 1): ZF = source is zero, destination then unchanged.</summary>
    public static int BitScan(Core c, Instr* i)
    {
        int size = i->OpSize;
        if (!c.ReadOp1(i, out ulong v)) return ExecStatus.Event;
        v &= Arithmetic.SizeMask(size);
        ref CpuState s = ref c.S;
        if (v == 0)
        {
            LazyFlags.SetEager(ref s, RflagsBits.Arith, RflagsBits.ZF | RflagsBits.PF);
            return ExecStatus.Continue;
        }
        ulong r = i->Sub == 0 ? (ulong)BitOperations.TrailingZeroCount(v) : (ulong)BitOperations.Log2(v);
        c.SetReg(i->Op0, size, r);
        LazyFlags.SetEager(ref s, RflagsBits.Arith, LazyFlags.Parity(r));
        return ExecStatus.Continue;
    }

    /// <summary>TZCNT (Sub = 0) / LZCNT (Sub = 1): CF = source zero, ZF = result zero.</summary>
    public static int Count(Core c, Instr* i)
    {
        int size = i->OpSize;
        int bits = size * 8;
        if (!c.ReadOp1(i, out ulong v)) return ExecStatus.Event;
        v &= Arithmetic.SizeMask(size);
        ulong r = v == 0 ? (ulong)bits
            : i->Sub == 0 ? (ulong)BitOperations.TrailingZeroCount(v)
            : (ulong)(bits - 1 - BitOperations.Log2(v));
        c.SetReg(i->Op0, size, r);
        ulong f = (v == 0 ? RflagsBits.CF : 0) | (r == 0 ? RflagsBits.ZF : 0) | LazyFlags.Parity(r);
        LazyFlags.SetEager(ref c.S, RflagsBits.Arith, f);
        return ExecStatus.Continue;
    }

    /// <summary>POPCNT: ZF = source zero, other arithmetic flags cleared.</summary>
    public static int Popcnt(Core c, Instr* i)
    {
        int size = i->OpSize;
        if (!c.ReadOp1(i, out ulong v)) return ExecStatus.Event;
        v &= Arithmetic.SizeMask(size);
        c.SetReg(i->Op0, size, (ulong)BitOperations.PopCount(v));
        LazyFlags.SetEager(ref c.S, RflagsBits.Arith, v == 0 ? RflagsBits.ZF : 0);
        return ExecStatus.Continue;
    }
}
