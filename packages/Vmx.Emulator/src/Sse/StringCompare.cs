using VmmKit.Vmx.Emulator.Engine;
using RflagsBits = VmmKit.Vmx.Emulator.Engine.RflagsBits;

namespace VmmKit.Vmx.Emulator.Sse;

/// <summary>
/// SSE4.2 PCMPESTRI, PCMPESTRM, PCMPISTRI, PCMPISTRM (SDM Vol. 2 §4.1 "Imm8 control byte operation for
/// PCMPESTRI/PCMPESTRM/PCMPISTRI/PCMPISTRM": source format, aggregation, polarity, output selection, the
/// validity overrides of table 4-7 and the flags of §4.1.6). Sub: <see cref="Explicit"/>, <see cref="Mask"/>,
/// <see cref="Wide"/>. The memory operand needs no alignment.
/// </summary>
internal static unsafe class StringCompare
{
    /// <summary>Explicit lengths in EAX/EDX (PCMPESTRx), else null-terminated.</summary>
    public const byte Explicit = 1;
    /// <summary>xSTRM (mask to XMM0), else xSTRI (index to ECX).</summary>
    public const byte Mask = 2;
    /// <summary>REX.W: lengths from RAX/RDX.</summary>
    public const byte Wide = 4;

    public static int Execute(Core c, Instr* i)
    {
        int st = SseState.Check(c);
        if (st != ExecStatus.Continue)
            return st;
        if (!SseState.Source(c, i, i->Op1, aligned: false, out var bv))
            return ExecStatus.Event;
        var av = SseState.X(c, i->Op0);
        int imm = (byte)i->Imm;
        bool words = (imm & 1) != 0, signed = (imm & 2) != 0;
        int n = words ? 8 : 16;
        int* a = stackalloc int[16];
        int* b = stackalloc int[16];
        for (int k = 0; k < n; k++)
        {
            a[k] = Element((byte*)&av, k, words, signed);
            b[k] = Element((byte*)&bv, k, words, signed);
        }
        int la, lb;
        ref CpuState s = ref c.S;
        if ((i->Sub & Explicit) != 0)
        {
            la = Length(s.Gpr[0], (i->Sub & Wide) != 0, n);
            lb = Length(s.Gpr[2], (i->Sub & Wide) != 0, n);
        }
        else
        {
            la = lb = n;
            for (int k = n - 1; k >= 0; k--)
            {
                if (a[k] == 0) la = k;
                if (b[k] == 0) lb = k;
            }
        }

        int res1 = 0;
        switch ((imm >> 2) & 3)
        {
            case 0: // equal any: b[j] is one of the valid a[]
                for (int j = 0; j < n; j++)
                    for (int k = 0; k < n; k++)
                        if (j < lb && k < la && a[k] == b[j]) res1 |= 1 << j;
                break;
            case 1: // ranges: a[] holds (low, high) pairs
                for (int j = 0; j < n; j++)
                    for (int k = 0; k + 1 < n; k += 2)
                        if (j < lb && k + 1 < la && b[j] >= a[k] && b[j] <= a[k + 1]) res1 |= 1 << j;
                break;
            case 2: // equal each: both invalid -> true, one invalid -> false
                for (int j = 0; j < n; j++)
                {
                    bool va = j < la, vb = j < lb;
                    if (va && vb ? a[j] == b[j] : !va && !vb) res1 |= 1 << j;
                }
                break;
            default: // equal ordered: a[] found at b[j]; invalid a[k] -> true, valid a[k] beyond b -> false
                for (int j = 0; j < n; j++)
                {
                    bool match = true;
                    for (int k = 0; k < n - j && match; k++)
                    {
                        bool va = k < la, vb = j + k < lb;
                        match = !va || (vb && a[k] == b[j + k]);
                    }
                    if (match) res1 |= 1 << j;
                }
                break;
        }
        int all = (1 << n) - 1;
        int validB = (1 << lb) - 1;
        int res2 = ((imm >> 4) & 3) switch
        {
            1 => ~res1 & all,
            3 => (res1 ^ validB) & all,
            _ => res1,
        };

        if ((i->Sub & Mask) != 0)
        {
            // xSTRM: XMM0 = the bit mask zero-extended (imm8[6] = 0) or expanded to element masks (imm8[6] = 1).
            ulong lo = 0, hi = 0;
            if ((imm & 0x40) == 0)
                lo = (ulong)res2;
            else
            {
                int size = words ? 2 : 1;
                for (int k = 0; k < n; k++)
                {
                    if ((res2 >> k & 1) == 0) continue;
                    int bit = k * size * 8;
                    ulong m = size == 2 ? 0xFFFFUL : 0xFFUL;
                    if (bit < 64) lo |= m << bit; else hi |= m << (bit - 64);
                }
            }
            s.XmmLow(0) = lo;
            s.XmmHigh(0) = hi;
        }
        else
        {
            // xSTRI: ECX = index of the least (imm8[6] = 0) or most significant set bit, n when none.
            int index = res2 == 0 ? n : (imm & 0x40) == 0
                ? System.Numerics.BitOperations.TrailingZeroCount(res2)
                : 31 - System.Numerics.BitOperations.LeadingZeroCount((uint)res2);
            c.SetReg(1, 4, (ulong)index);
        }
        ulong flags = (res2 != 0 ? RflagsBits.CF : 0) | (lb < n ? RflagsBits.ZF : 0) | (la < n ? RflagsBits.SF : 0)
            | ((res2 & 1) != 0 ? RflagsBits.OF : 0);
        LazyFlags.SetEager(ref c.S, RflagsBits.Arith, flags);
        return ExecStatus.Continue;
    }

    private static int Element(byte* p, int k, bool words, bool signed) => words
        ? signed ? ((short*)p)[k] : ((ushort*)p)[k]
        : signed ? ((sbyte*)p)[k] : p[k];

    /// <summary>|EAX| or |RAX| saturated to <paramref name="n"/> (§4.1.3? "explicit length").</summary>
    private static int Length(ulong value, bool wide, int n)
    {
        long v = wide ? (long)value : (int)value;
        if (v == long.MinValue) return n;
        v = Math.Abs(v);
        return v > n ? n : (int)v;
    }
}
