using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Sse;

/// <summary>SSSE3 operations (SDM Vol. 2, each instruction's "Operation"), shared by the MMX (8-byte) and XMM (16-byte) forms.</summary>
internal enum Ssse3Op : byte
{
    Pshufb = 1, Phaddw, Phaddd, Phaddsw, Phsubw, Phsubd, Phsubsw, Pmaddubsw, Pmulhrsw,
    Psignb, Psignw, Psignd, Pabsb, Pabsw, Pabsd, Palignr,
}

/// <summary>
/// The SSSE3 instructions as element loops over the operand bytes (<c>n</c> = 8 for MMX, 16 for XMM). Pure
/// integer functions of their inputs: no host SSSE3 needed.
/// </summary>
internal static unsafe class Ssse3
{
    /// <summary>d = op(d, s) over <paramref name="n"/> bytes; <paramref name="imm"/> is PALIGNR's byte count.</summary>
    public static void Compute(Ssse3Op op, byte* d, byte* s, int n, int imm)
    {
        byte* r = stackalloc byte[16];
        switch (op)
        {
            case Ssse3Op.Pshufb:
                for (int k = 0; k < n; k++)
                    r[k] = (s[k] & 0x80) != 0 ? (byte)0 : d[s[k] & (n - 1)];
                break;
            case Ssse3Op.Phaddw: Horizontal16(d, s, r, n, (x, y) => x + y, saturate: false); break;
            case Ssse3Op.Phaddsw: Horizontal16(d, s, r, n, (x, y) => x + y, saturate: true); break;
            case Ssse3Op.Phsubw: Horizontal16(d, s, r, n, (x, y) => x - y, saturate: false); break;
            case Ssse3Op.Phsubsw: Horizontal16(d, s, r, n, (x, y) => x - y, saturate: true); break;
            case Ssse3Op.Phaddd or Ssse3Op.Phsubd:
            {
                int half = n / 8;
                for (int k = 0; k < half; k++)
                {
                    int* da = (int*)d, sa = (int*)s;
                    ((int*)r)[k] = op == Ssse3Op.Phaddd ? da[2 * k] + da[2 * k + 1] : da[2 * k] - da[2 * k + 1];
                    ((int*)r)[half + k] = op == Ssse3Op.Phaddd ? sa[2 * k] + sa[2 * k + 1] : sa[2 * k] - sa[2 * k + 1];
                }
                break;
            }
            case Ssse3Op.Pmaddubsw:
                // Unsigned bytes of the destination times signed bytes of the source, adjacent pairs added with signed saturation.
                for (int k = 0; k < n / 2; k++)
                {
                    int v = d[2 * k] * (sbyte)s[2 * k] + d[2 * k + 1] * (sbyte)s[2 * k + 1];
                    ((short*)r)[k] = (short)Math.Clamp(v, short.MinValue, short.MaxValue);
                }
                break;
            case Ssse3Op.Pmulhrsw:
                for (int k = 0; k < n / 2; k++)
                {
                    int v = ((short*)d)[k] * ((short*)s)[k];
                    ((short*)r)[k] = (short)((((v >> 14) + 1) >> 1) & 0xFFFF);
                }
                break;
            case Ssse3Op.Psignb:
                for (int k = 0; k < n; k++)
                    r[k] = (byte)Sign((sbyte)d[k], (sbyte)s[k]);
                break;
            case Ssse3Op.Psignw:
                for (int k = 0; k < n / 2; k++)
                    ((short*)r)[k] = (short)Sign(((short*)d)[k], ((short*)s)[k]);
                break;
            case Ssse3Op.Psignd:
                for (int k = 0; k < n / 4; k++)
                    ((int*)r)[k] = ((int*)s)[k] < 0 ? -((int*)d)[k] : ((int*)s)[k] == 0 ? 0 : ((int*)d)[k];
                break;
            case Ssse3Op.Pabsb:
                for (int k = 0; k < n; k++)
                    r[k] = (byte)Math.Abs((int)(sbyte)s[k]);
                break;
            case Ssse3Op.Pabsw:
                for (int k = 0; k < n / 2; k++)
                    ((ushort*)r)[k] = (ushort)Math.Abs((int)((short*)s)[k]);
                break;
            case Ssse3Op.Pabsd:
                for (int k = 0; k < n / 4; k++)
                    ((uint*)r)[k] = (uint)Math.Abs((long)((int*)s)[k]);
                break;
            case Ssse3Op.Palignr:
                // Concatenate destination:source (source in the low half), shift right by imm bytes, keep the low n bytes.
                for (int k = 0; k < n; k++)
                {
                    int at = k + imm;
                    r[k] = at < n ? s[at] : at < 2 * n ? d[at - n] : (byte)0;
                }
                break;
        }
        Buffer.MemoryCopy(r, d, n, n);
    }

    private static int Sign(int value, int sign) => sign < 0 ? -value : sign == 0 ? 0 : value;

    private static void Horizontal16(byte* d, byte* s, byte* r, int n, Func<int, int, int> f, bool saturate)
    {
        int half = n / 4;
        short* da = (short*)d, sa = (short*)s, ra = (short*)r;
        for (int k = 0; k < half; k++)
        {
            int x = f(da[2 * k], da[2 * k + 1]);
            int y = f(sa[2 * k], sa[2 * k + 1]);
            ra[k] = saturate ? (short)Math.Clamp(x, short.MinValue, short.MaxValue) : (short)x;
            ra[half + k] = saturate ? (short)Math.Clamp(y, short.MinValue, short.MaxValue) : (short)y;
        }
    }

    /// <summary>The XMM forms <c>op xmm, xmm/m128 [, imm8]</c> (Sub = <see cref="Ssse3Op"/>).</summary>
    public static int Xmm(Core c, Instr* i)
    {
        int st = SseState.Check(c);
        if (st != ExecStatus.Continue)
            return st;
        if (!SseState.Source(c, i, i->Op1, aligned: true, out var b))
            return ExecStatus.Event;
        ref var d = ref SseState.X(c, i->Op0);
        var dv = d;
        Compute((Ssse3Op)i->Sub, (byte*)&dv, (byte*)&b, 16, (byte)i->Imm);
        d = dv;
        return ExecStatus.Continue;
    }
}
