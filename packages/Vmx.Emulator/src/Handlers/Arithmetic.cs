using System.Runtime.CompilerServices;
using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Handlers;

/// <summary>Binary arithmetic and logic (SDM Vol. 1 §7.3.2, §7.3.4; Vol. 2 ADD..XOR, INC, DEC, NEG, NOT).</summary>
internal static unsafe class Arithmetic
{
    /// <summary>ALU operations in <see cref="Instr.Sub"/> (the /r digit order of opcodes 80-83, plus TEST).</summary>
    public const byte Add = 0, Or = 1, Adc = 2, Sbb = 3, And = 4, Sub = 5, Xor = 6, Cmp = 7, Test = 8;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong SizeMask(int size) => size == 8 ? ulong.MaxValue : (1UL << (size * 8)) - 1;

    /// <summary>op0 = op0 (op) (op1 | imm).</summary>
    public static int Alu(Core c, Instr* i)
    {
        int size = i->OpSize;
        ulong src;
        if (i->Op1 == Instr.NoRegister) src = i->Imm;
        else if (i->Op1 != Instr.MemoryOperand) src = c.GetReg(i->Op1, size);
        else if (!c.Read(c.LinearAddress(i), size, out src)) return ExecStatus.Event;
        ulong dst;
        ulong lin = 0;
        bool mem = i->Op0 == Instr.MemoryOperand;
        if (!mem) dst = c.GetReg(i->Op0, size);
        else
        {
            lin = c.LinearAddress(i);
            if (!c.Read(lin, size, out dst)) return ExecStatus.Event;
        }
        ref CpuState s = ref c.S;
        ulong r;
        switch (i->Sub)
        {
            case Add: r = dst + src; LazyFlags.Set(ref s, LazyFlagOp.Add, size, r, dst, src); break;
            case Or: r = dst | src; LazyFlags.Set(ref s, LazyFlagOp.Logic, size, r, 0, 0); break;
            case Adc:
                {
                    ulong cf = LazyFlags.Carry(ref s) ? 1UL : 0;
                    r = dst + src + cf;
                    LazyFlags.Set(ref s, LazyFlagOp.Add, size, r, dst, src);
                    LazyFlags.Materialize(ref s);
                    break;
                }
            case Sbb:
                {
                    ulong cf = LazyFlags.Carry(ref s) ? 1UL : 0;
                    r = dst - src - cf;
                    LazyFlags.Set(ref s, LazyFlagOp.Sub, size, r, dst, src);
                    LazyFlags.Materialize(ref s);
                    break;
                }
            case And: r = dst & src; LazyFlags.Set(ref s, LazyFlagOp.Logic, size, r, 0, 0); break;
            case Sub: r = dst - src; LazyFlags.Set(ref s, LazyFlagOp.Sub, size, r, dst, src); break;
            case Xor: r = dst ^ src; LazyFlags.Set(ref s, LazyFlagOp.Logic, size, r, 0, 0); break;
            case Cmp: LazyFlags.Set(ref s, LazyFlagOp.Sub, size, dst - src, dst, src); return ExecStatus.Continue;
            default: LazyFlags.Set(ref s, LazyFlagOp.Logic, size, dst & src, 0, 0); return ExecStatus.Continue;
        }
        if (!mem) c.SetReg(i->Op0, size, r);
        else if (!c.Write(lin, size, r)) return ExecStatus.Event;
        return ExecStatus.Continue;
    }

    /// <summary>Fast form: 32/64-bit register-register or register-immediate ADD/SUB/AND/OR/XOR/CMP/TEST.</summary>
    public static int AluRegFast(Core c, Instr* i)
    {
        if (i->Op0 == Instr.MemoryOperand || i->Op1 == Instr.MemoryOperand || i->OpSize < 4) return Alu(c, i);
        ref CpuState s = ref c.S;
        int size = i->OpSize;
        ulong dst = s.Gpr[i->Op0];
        ulong src = i->Op1 == Instr.NoRegister ? i->Imm : s.Gpr[i->Op1];
        ulong r;
        switch (i->Sub)
        {
            case Add: r = dst + src; LazyFlags.Set(ref s, LazyFlagOp.Add, size, r, dst, src); break;
            case Sub: r = dst - src; LazyFlags.Set(ref s, LazyFlagOp.Sub, size, r, dst, src); break;
            case Cmp: LazyFlags.Set(ref s, LazyFlagOp.Sub, size, dst - src, dst, src); return ExecStatus.Continue;
            case Test: LazyFlags.Set(ref s, LazyFlagOp.Logic, size, dst & src, 0, 0); return ExecStatus.Continue;
            case And: r = dst & src; LazyFlags.Set(ref s, LazyFlagOp.Logic, size, r, 0, 0); break;
            case Or: r = dst | src; LazyFlags.Set(ref s, LazyFlagOp.Logic, size, r, 0, 0); break;
            case Xor: r = dst ^ src; LazyFlags.Set(ref s, LazyFlagOp.Logic, size, r, 0, 0); break;
            default: return Alu(c, i);
        }
        s.Gpr[i->Op0] = size == 8 ? r : (uint)r;
        return ExecStatus.Continue;
    }

    /// <summary>INC (Sub = 0) / DEC (Sub = 1): CF unchanged.</summary>
    public static int IncDec(Core c, Instr* i)
    {
        if (i->Op0 != Instr.MemoryOperand && i->OpSize >= 4)
        {
            ref CpuState s = ref c.S;
            ulong old = s.Gpr[i->Op0];
            ulong res = i->Sub == 0 ? old + 1 : old - 1;
            s.Gpr[i->Op0] = i->OpSize == 8 ? res : (uint)res;
            LazyFlags.SetIncDec(ref s, i->Sub == 0, i->OpSize, res, old);
            return ExecStatus.Continue;
        }
        int size = i->OpSize;
        if (!c.ReadOp0(i, out ulong v)) return ExecStatus.Event;
        ulong r = i->Sub == 0 ? v + 1 : v - 1;
        if (!c.WriteOp0(i, r)) return ExecStatus.Event;
        LazyFlags.SetIncDec(ref c.S, i->Sub == 0, size, r, v);
        return ExecStatus.Continue;
    }

    /// <summary>NEG: 0 - op0, CF = op0 != 0.</summary>
    public static int Neg(Core c, Instr* i)
    {
        if (!c.ReadOp0(i, out ulong v)) return ExecStatus.Event;
        ulong r = 0 - v;
        if (!c.WriteOp0(i, r)) return ExecStatus.Event;
        LazyFlags.Set(ref c.S, LazyFlagOp.Sub, i->OpSize, r, 0, v);
        return ExecStatus.Continue;
    }

    /// <summary>NOT: no flags.</summary>
    public static int Not(Core c, Instr* i)
    {
        if (!c.ReadOp0(i, out ulong v)) return ExecStatus.Event;
        return c.WriteOp0(i, ~v) ? ExecStatus.Continue : ExecStatus.Event;
    }

    /// <summary>Sign-extends the low <paramref name="size"/> bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long SignExtend(ulong v, int size) => size switch
    {
        1 => (sbyte)v,
        2 => (short)v,
        4 => (int)v,
        _ => (long)v,
    };

    private static void SetMulFlags(Core c, int size, ulong low, bool overflow)
    {
        // SDM MUL/IMUL: CF = OF = high half significant; SF ZF AF PF undefined (we use the low half's SF/ZF/PF, AF = 0).
        ulong f = LazyFlags.ZsP(low, size) | (overflow ? RflagsBits.CF | RflagsBits.OF : 0);
        LazyFlags.SetEager(ref c.S, RflagsBits.Arith, f);
    }

    /// <summary>MUL r/m (Sub = 0) and one-operand IMUL r/m (Sub = 1): rDX:rAX = rAX * src.</summary>
    public static int MulOne(Core c, Instr* i)
    {
        int size = i->OpSize;
        if (!c.ReadOp0(i, out ulong src)) return ExecStatus.Event;
        ref CpuState s = ref c.S;
        bool signed = i->Sub == 1;
        if (size == 1)
        {
            ulong al = (byte)s.Gpr[0];
            ulong r = signed ? (ulong)(ushort)(short)((sbyte)al * (sbyte)src) : (ushort)(al * (byte)src);
            c.SetReg(0, 2, r);
            bool of = signed ? (short)r != (sbyte)r : (r >> 8) != 0;
            SetMulFlags(c, 1, r, of);
            return ExecStatus.Continue;
        }
        ulong a = c.GetReg(0, size);
        ulong lo, hi;
        bool overflow;
        if (size == 8)
        {
            if (signed)
            {
                Int128 p = (Int128)(long)a * (long)src;
                lo = (ulong)p;
                hi = (ulong)(p >> 64);
                overflow = p != (long)lo;
            }
            else
            {
                hi = Math.BigMul(a, src, out lo);
                overflow = hi != 0;
            }
        }
        else
        {
            int bits = size * 8;
            ulong m = SizeMask(size);
            ulong p = signed ? (ulong)(SignExtend(a, size) * SignExtend(src, size)) : a * (src & m);
            lo = p & m;
            hi = (p >> bits) & m;
            overflow = signed ? (long)p != SignExtend(lo, size) : hi != 0;
        }
        c.SetReg(0, size, lo);
        c.SetReg(2, size, hi);
        SetMulFlags(c, size, lo, overflow);
        return ExecStatus.Continue;
    }

    /// <summary>IMUL r, r/m and IMUL r, r/m, imm: truncated signed product.</summary>
    public static int ImulTwo(Core c, Instr* i)
    {
        int size = i->OpSize;
        ulong a, b;
        if (i->Sub == 1)
        {
            // IMUL r, r/m, imm: operand 1 is the r/m source.
            if (i->Op1 != Instr.MemoryOperand) a = c.GetReg(i->Op1, size);
            else if (!c.Read(c.LinearAddress(i), size, out a)) return ExecStatus.Event;
            b = i->Imm;
        }
        else
        {
            a = c.GetReg(i->Op0, size);
            if (i->Op1 != Instr.MemoryOperand) b = c.GetReg(i->Op1, size);
            else if (!c.Read(c.LinearAddress(i), size, out b)) return ExecStatus.Event;
        }
        ulong lo;
        bool overflow;
        if (size == 8)
        {
            Int128 p = (Int128)(long)a * (long)b;
            lo = (ulong)p;
            overflow = p != (long)lo;
        }
        else
        {
            long p = SignExtend(a, size) * SignExtend(b, size);
            lo = (ulong)p & SizeMask(size);
            overflow = p != SignExtend(lo, size);
        }
        c.SetReg(i->Op0, size, lo);
        SetMulFlags(c, size, lo, overflow);
        return ExecStatus.Continue;
    }

    /// <summary>DIV (Sub = 0) / IDIV (Sub = 1): #DE on zero divisor or quotient overflow (SDM DIV/IDIV).</summary>
    public static int Div(Core c, Instr* i)
    {
        int size = i->OpSize;
        if (!c.ReadOp0(i, out ulong d)) return ExecStatus.Event;
        ref CpuState s = ref c.S;
        bool signed = i->Sub == 1;
        d &= SizeMask(size);
        if (d == 0) return c.RaiseException(ExceptionVector.DE);
        if (size == 8)
        {
            ulong lo = s.Gpr[0], hi = s.Gpr[2];
            if (!signed)
            {
                if (hi >= d) return c.RaiseException(ExceptionVector.DE);
                UInt128 n = ((UInt128)hi << 64) | lo;
                s.Gpr[0] = (ulong)(n / d);
                s.Gpr[2] = (ulong)(n % d);
            }
            else
            {
                Int128 n = (Int128)(((UInt128)hi << 64) | lo);
                long dv = (long)d;
                if (dv == -1 && n == Int128.MinValue) return c.RaiseException(ExceptionVector.DE);
                Int128 q = n / dv;
                if (q > long.MaxValue || q < long.MinValue) return c.RaiseException(ExceptionVector.DE);
                s.Gpr[0] = (ulong)(long)q;
                s.Gpr[2] = (ulong)(long)(n % dv);
            }
            return ExecStatus.Continue;
        }
        ulong dividend;
        int bits = size * 8;
        if (size == 1) dividend = (ushort)s.Gpr[0];
        else dividend = (c.GetReg(2, size) << bits) | c.GetReg(0, size);
        ulong q1, r1;
        if (!signed)
        {
            q1 = dividend / d;
            r1 = dividend % d;
            if (q1 > SizeMask(size)) return c.RaiseException(ExceptionVector.DE);
        }
        else
        {
            long n = SignExtend(dividend, size * 2);
            long dv = SignExtend(d, size);
            long q = n / dv;
            long min = -(1L << (bits - 1)), max = (1L << (bits - 1)) - 1;
            if (q < min || q > max) return c.RaiseException(ExceptionVector.DE);
            q1 = (ulong)q;
            r1 = (ulong)(n % dv);
        }
        if (size == 1)
        {
            s.Gpr[0] = (s.Gpr[0] & ~0xFFFFUL) | (byte)q1 | ((ulong)(byte)r1 << 8);
        }
        else
        {
            c.SetReg(0, size, q1);
            c.SetReg(2, size, r1);
        }
        return ExecStatus.Continue;
    }
}
