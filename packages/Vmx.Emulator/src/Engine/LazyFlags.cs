using System.Numerics;
using System.Runtime.CompilerServices;

namespace VmmKit.Vmx.Emulator.Engine;

/// <summary>What produced the pending (lazy) arithmetic flags.</summary>
internal enum LazyFlagOp : uint
{
    /// <summary>The arithmetic bits of <see cref="CpuState.Rflags"/> are valid.</summary>
    None = 0,
    /// <summary>Result = Src1 + Src2 (+ carry for ADC).</summary>
    Add = 1,
    /// <summary>Result = Src1 - Src2 (- borrow for SBB; CMP, NEG as 0 - x).</summary>
    Sub = 2,
    /// <summary>AND/OR/XOR/TEST: CF = OF = AF = 0.</summary>
    Logic = 3,
    /// <summary>INC: like Add with Src2 = 1, CF kept in Rflags.</summary>
    Inc = 4,
    /// <summary>DEC: like Sub with Src2 = 1, CF kept in Rflags.</summary>
    Dec = 5,
}

/// <summary>
/// Lazy evaluation of CF/PF/AF/ZF/SF/OF. A flag-setting instruction stores (op, size, result,
/// sources) and nothing else; a consumer computes only the flag it needs. Carry/borrow and
/// overflow come from the per-bit carry vectors (SDM Vol. 1 §3.4.3.1).
/// </summary>
internal static class LazyFlags
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Set(ref CpuState s, LazyFlagOp op, int size, ulong result, ulong src1, ulong src2)
    {
        s.LazyOp = (uint)op;
        s.LazySize = (uint)size;
        s.LazyResult = result;
        s.LazySrc1 = src1;
        s.LazySrc2 = src2;
    }

    /// <summary>Sets lazy flags for INC/DEC: CF is first made concrete because they preserve it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void SetIncDec(ref CpuState s, bool inc, int size, ulong result, ulong src)
    {
        if (s.LazyOp != (uint)LazyFlagOp.None)
        {
            ulong cf = Carry(ref s) ? RflagsBits.CF : 0;
            s.Rflags = (s.Rflags & ~RflagsBits.CF) | cf;
        }
        Set(ref s, inc ? LazyFlagOp.Inc : LazyFlagOp.Dec, size, result, src, 1);
    }

    /// <summary>Writes the computed arithmetic flags into Rflags and clears the lazy state.</summary>
    public static void Materialize(ref CpuState s)
    {
        if (s.LazyOp == (uint)LazyFlagOp.None)
        {
            return;
        }
        s.Rflags = (s.Rflags & ~RflagsBits.Arith) | Compute(ref s);
        s.LazyOp = (uint)LazyFlagOp.None;
    }

    /// <summary>Replaces the flags in <paramref name="mask"/> with <paramref name="values"/> (eager path).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void SetEager(ref CpuState s, ulong mask, ulong values)
    {
        if (s.LazyOp != (uint)LazyFlagOp.None)
        {
            if (mask == RflagsBits.Arith)
            {
                // Every arithmetic flag is replaced: the pending ones need not be computed.
                s.LazyOp = (uint)LazyFlagOp.None;
                s.Rflags = (s.Rflags & ~RflagsBits.Arith) | (values & RflagsBits.Arith);
                return;
            }
            Materialize(ref s);
        }
        s.Rflags = (s.Rflags & ~mask) | (values & mask);
    }

    /// <summary>Parity flag value (bit 2) for the low byte of <paramref name="result"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Parity(ulong result) => (BitOperations.PopCount(result & 0xFF) & 1) == 0 ? RflagsBits.PF : 0;

    /// <summary>ZF, SF, PF for a result of <paramref name="size"/> bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong ZsP(ulong result, int size)
    {
        int bits = size * 8;
        ulong mask = bits == 64 ? ulong.MaxValue : (1UL << bits) - 1;
        ulong r = result & mask;
        ulong f = Parity(r);
        if (r == 0) f |= RflagsBits.ZF;
        if ((r >> (bits - 1) & 1) != 0) f |= RflagsBits.SF;
        return f;
    }

    private static ulong Compute(ref CpuState s)
    {
        int bits = (int)s.LazySize * 8;
        ulong mask = bits == 64 ? ulong.MaxValue : (1UL << bits) - 1;
        ulong r = s.LazyResult & mask, a = s.LazySrc1, b = s.LazySrc2;
        ulong f = ZsP(r, (int)s.LazySize);
        int top = bits - 1;
        switch ((LazyFlagOp)s.LazyOp)
        {
            case LazyFlagOp.Add:
                {
                    ulong carries = (a & b) | ((a | b) & ~r);
                    f |= (carries >> top) & 1;
                    f |= (a ^ b ^ r) & RflagsBits.AF;
                    f |= ((((a ^ r) & (b ^ r)) >> top) & 1) << 11;
                    break;
                }
            case LazyFlagOp.Sub:
                {
                    ulong borrows = (~a & b) | ((~a | b) & r);
                    f |= (borrows >> top) & 1;
                    f |= (a ^ b ^ r) & RflagsBits.AF;
                    f |= ((((a ^ b) & (a ^ r)) >> top) & 1) << 11;
                    break;
                }
            case LazyFlagOp.Logic:
                break;
            case LazyFlagOp.Inc:
                f |= s.Rflags & RflagsBits.CF;
                f |= (a ^ 1 ^ r) & RflagsBits.AF;
                f |= ((((a ^ r) & (1 ^ r)) >> top) & 1) << 11;
                break;
            case LazyFlagOp.Dec:
                f |= s.Rflags & RflagsBits.CF;
                f |= (a ^ 1 ^ r) & RflagsBits.AF;
                f |= ((((a ^ 1) & (a ^ r)) >> top) & 1) << 11;
                break;
        }
        return f;
    }

    /// <summary>CF without materializing everything.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Carry(ref CpuState s)
    {
        switch ((LazyFlagOp)s.LazyOp)
        {
            case LazyFlagOp.None:
            case LazyFlagOp.Inc:
            case LazyFlagOp.Dec:
                return (s.Rflags & RflagsBits.CF) != 0;
            case LazyFlagOp.Logic:
                return false;
            case LazyFlagOp.Add:
                {
                    // ADC/SBB materialize immediately, so a pending Add/Sub never has a carry-in.
                    int sh = 64 - (int)s.LazySize * 8;
                    return (s.LazyResult << sh) < (s.LazySrc1 << sh);
                }
            default:
                {
                    int sh = 64 - (int)s.LazySize * 8;
                    return (s.LazySrc1 << sh) < (s.LazySrc2 << sh);
                }
        }
    }

    /// <summary>Evaluates condition code <paramref name="cc"/> (0 O, 1 NO, 2 B, ... 15 G; SDM Vol. 1 Appendix B).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Condition(ref CpuState s, int cc)
    {
        if (s.LazyOp == (uint)LazyFlagOp.Sub)
        {
            return SubCondition(ref s, cc);
        }
        if (s.LazyOp == (uint)LazyFlagOp.Logic && cc >= 4 && cc < 10 && cc != 6 && cc != 7)
        {
            // TEST/AND/OR/XOR + Jcc on ZF or SF.
            int sh = 64 - (int)s.LazySize * 8;
            ulong r = s.LazyResult << sh;
            bool v = cc < 6 ? r == 0 : (long)r < 0;
            return v ^ ((cc & 1) != 0);
        }
        return FlagsCondition(s.LazyOp == (uint)LazyFlagOp.None ? s.Rflags : (s.Rflags & ~RflagsBits.Arith) | Compute(ref s), cc);
    }

    private static bool SubCondition(ref CpuState s, int cc)
    {
        // CMP/SUB: compare the sources directly (the common cmp+jcc pair).
        int sh = 64 - (int)s.LazySize * 8;
        ulong ua = s.LazySrc1 << sh, ub = s.LazySrc2 << sh;
        bool r;
        switch (cc >> 1)
        {
            case 1: r = ua < ub; break;                 // B
            case 2: r = (s.LazyResult << sh) == 0; break; // E
            case 3: r = ua <= ub; break;                // BE
            case 6: r = (long)ua < (long)ub; break;     // L
            case 7: r = (long)ua <= (long)ub; break;    // LE
            default:
                return FlagsCondition((s.Rflags & ~RflagsBits.Arith) | Compute(ref s), cc);
        }
        return r ^ ((cc & 1) != 0);
    }

    /// <summary>Evaluates a condition code against concrete flags.</summary>
    public static bool FlagsCondition(ulong f, int cc)
    {
        bool r;
        switch (cc >> 1)
        {
            case 0: r = (f & RflagsBits.OF) != 0; break;
            case 1: r = (f & RflagsBits.CF) != 0; break;
            case 2: r = (f & RflagsBits.ZF) != 0; break;
            case 3: r = (f & (RflagsBits.CF | RflagsBits.ZF)) != 0; break;
            case 4: r = (f & RflagsBits.SF) != 0; break;
            case 5: r = (f & RflagsBits.PF) != 0; break;
            case 6: r = ((f >> 7) & 1) != ((f >> 11) & 1); break;
            default: r = (f & RflagsBits.ZF) != 0 || ((f >> 7) & 1) != ((f >> 11) & 1); break;
        }
        return r ^ ((cc & 1) != 0);
    }
}
