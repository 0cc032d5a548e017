using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Sse;

/// <summary>Two-operand packed operations <c>op xmm, xmm/m128</c> (selected by <see cref="Instr.Sub"/>).</summary>
internal enum PackedOp : byte
{
    Paddb, Paddw, Paddd, Paddq, Paddsb, Paddsw, Paddusb, Paddusw,
    Psubb, Psubw, Psubd, Psubq, Psubsb, Psubsw, Psubusb, Psubusw,
    Pand, Pandn, Por, Pxor,
    Pcmpeqb, Pcmpeqw, Pcmpeqd, Pcmpgtb, Pcmpgtw, Pcmpgtd,
    Pminub, Pmaxub, Pminsw, Pmaxsw,
    Pmullw, Pmulhw, Pmulhuw, Pmuludq,
    Punpcklbw, Punpcklwd, Punpckldq, Punpcklqdq, Punpckhbw, Punpckhwd, Punpckhdq, Punpckhqdq,
    Packsswb, Packssdw, Packuswb,
    Psllw, Pslld, Psllq, Psrlw, Psrld, Psrlq, Psraw, Psrad,
    Pavgb, Pavgw, Psadbw, Pmaddwd,
}

/// <summary>
/// SSE2 packed-integer instructions and the bitwise/unpack floating-point ones that are the same
/// operation on bits (ANDPS = PAND, UNPCKLPS = PUNPCKLDQ ...). Pure functions of their inputs; the
/// portable <see cref="Vector128"/> operations compile to the SSE2 instruction on x86 hosts.
/// SDM Vol. 2, each instruction's "Operation" section.
/// </summary>
internal static unsafe class PackedInteger
{
    /// <summary><c>op xmm, xmm/m128</c>.</summary>
    public static int Binary(Core c, Instr* i)
    {
        int st = SseState.Check(c);
        if (st != ExecStatus.Continue)
            return st;
        if (!SseState.Source(c, i, i->Op1, aligned: true, out var b))
            return ExecStatus.Event;
        ref Vector128<byte> d = ref SseState.X(c, i->Op0);
        d = Compute((PackedOp)i->Sub, d, b);
        return ExecStatus.Continue;
    }

    /// <summary>PSLLW/D/Q, PSRLW/D/Q, PSRAW/D, PSLLDQ, PSRLDQ with an imm8 count (Sub = operation; DQ forms: Sub | 0x80).</summary>
    public static int ShiftImmediate(Core c, Instr* i)
    {
        int st = SseState.Check(c);
        if (st != ExecStatus.Continue)
            return st;
        ref Vector128<byte> d = ref SseState.X(c, i->Op0);
        byte imm = (byte)i->Imm;
        d = i->Sub switch
        {
            0x80 => ByteShiftLeft(d, imm),
            0x81 => ByteShiftRight(d, imm),
            _ => Shift((PackedOp)i->Sub, d, imm),
        };
        return ExecStatus.Continue;
    }

    internal static Vector128<byte> Compute(PackedOp op, Vector128<byte> a, Vector128<byte> b)
    {
        switch (op)
        {
            case PackedOp.Paddb: return a + b;
            case PackedOp.Paddw: return (a.AsUInt16() + b.AsUInt16()).AsByte();
            case PackedOp.Paddd: return (a.AsUInt32() + b.AsUInt32()).AsByte();
            case PackedOp.Paddq: return (a.AsUInt64() + b.AsUInt64()).AsByte();
            case PackedOp.Psubb: return a - b;
            case PackedOp.Psubw: return (a.AsUInt16() - b.AsUInt16()).AsByte();
            case PackedOp.Psubd: return (a.AsUInt32() - b.AsUInt32()).AsByte();
            case PackedOp.Psubq: return (a.AsUInt64() - b.AsUInt64()).AsByte();
            case PackedOp.Paddsb: return Saturate8(a, b, add: true, signed: true);
            case PackedOp.Paddusb: return Saturate8(a, b, add: true, signed: false);
            case PackedOp.Psubsb: return Saturate8(a, b, add: false, signed: true);
            case PackedOp.Psubusb: return Saturate8(a, b, add: false, signed: false);
            case PackedOp.Paddsw: return Saturate16(a, b, add: true, signed: true);
            case PackedOp.Paddusw: return Saturate16(a, b, add: true, signed: false);
            case PackedOp.Psubsw: return Saturate16(a, b, add: false, signed: true);
            case PackedOp.Psubusw: return Saturate16(a, b, add: false, signed: false);
            case PackedOp.Pand: return a & b;
            case PackedOp.Pandn: return ~a & b;
            case PackedOp.Por: return a | b;
            case PackedOp.Pxor: return a ^ b;
            case PackedOp.Pcmpeqb: return Vector128.Equals(a, b);
            case PackedOp.Pcmpeqw: return Vector128.Equals(a.AsUInt16(), b.AsUInt16()).AsByte();
            case PackedOp.Pcmpeqd: return Vector128.Equals(a.AsUInt32(), b.AsUInt32()).AsByte();
            case PackedOp.Pcmpgtb: return Vector128.GreaterThan(a.AsSByte(), b.AsSByte()).AsByte();
            case PackedOp.Pcmpgtw: return Vector128.GreaterThan(a.AsInt16(), b.AsInt16()).AsByte();
            case PackedOp.Pcmpgtd: return Vector128.GreaterThan(a.AsInt32(), b.AsInt32()).AsByte();
            case PackedOp.Pminub: return Vector128.Min(a, b);
            case PackedOp.Pmaxub: return Vector128.Max(a, b);
            case PackedOp.Pminsw: return Vector128.Min(a.AsInt16(), b.AsInt16()).AsByte();
            case PackedOp.Pmaxsw: return Vector128.Max(a.AsInt16(), b.AsInt16()).AsByte();
            case PackedOp.Pmullw: return (a.AsInt16() * b.AsInt16()).AsByte();
            case PackedOp.Pmulhw: return MultiplyHigh(a, b, signed: true);
            case PackedOp.Pmulhuw: return MultiplyHigh(a, b, signed: false);
            case PackedOp.Pmuludq:
            {
                var x = a.AsUInt64();
                var y = b.AsUInt64();
                return Vector128.Create((x.GetElement(0) & 0xFFFF_FFFF) * (y.GetElement(0) & 0xFFFF_FFFF),
                    (x.GetElement(1) & 0xFFFF_FFFF) * (y.GetElement(1) & 0xFFFF_FFFF)).AsByte();
            }
            case PackedOp.Punpcklbw: return Interleave(a, b, 1, high: false);
            case PackedOp.Punpcklwd: return Interleave(a, b, 2, high: false);
            case PackedOp.Punpckldq: return Interleave(a, b, 4, high: false);
            case PackedOp.Punpcklqdq: return Interleave(a, b, 8, high: false);
            case PackedOp.Punpckhbw: return Interleave(a, b, 1, high: true);
            case PackedOp.Punpckhwd: return Interleave(a, b, 2, high: true);
            case PackedOp.Punpckhdq: return Interleave(a, b, 4, high: true);
            case PackedOp.Punpckhqdq: return Interleave(a, b, 8, high: true);
            case PackedOp.Packsswb: return PackSignedWords(a, b);
            case PackedOp.Packssdw: return PackSignedDwords(a, b);
            case PackedOp.Packuswb: return PackUnsignedWords(a, b);
            case PackedOp.Pavgb:
            {
                // PAVGB: (a + b + 1) >> 1 per unsigned byte, computed without overflow.
                return (a | b) - ((a ^ b) >> 1);
            }
            case PackedOp.Pavgw:
                return ((a.AsUInt16() | b.AsUInt16()) - ((a.AsUInt16() ^ b.AsUInt16()) >> 1)).AsByte();
            case PackedOp.Psadbw:
            {
                // PSADBW: sum of |a - b| over each group of 8 bytes into the low word of each quadword.
                ulong low = 0, high = 0;
                for (int k = 0; k < 8; k++)
                {
                    low += (ulong)Math.Abs(a.GetElement(k) - b.GetElement(k));
                    high += (ulong)Math.Abs(a.GetElement(k + 8) - b.GetElement(k + 8));
                }
                return Vector128.Create(low, high).AsByte();
            }
            case PackedOp.Pmaddwd:
            {
                // PMADDWD: pairs of signed word products summed into dwords (0x8000*0x8000*2 wraps to 0x80000000).
                Span<int> r = stackalloc int[4];
                var x = a.AsInt16();
                var y = b.AsInt16();
                for (int k = 0; k < 4; k++)
                    r[k] = unchecked(x.GetElement(2 * k) * y.GetElement(2 * k) + x.GetElement(2 * k + 1) * y.GetElement(2 * k + 1));
                return Vector128.Create((ReadOnlySpan<int>)r).AsByte();
            }
            default:
            {
                // Shift by the 64-bit count in the low quadword of the source (SDM PSLLW: "COUNT ← SRC[63:0]").
                ulong count = b.AsUInt64().GetElement(0);
                return Shift(op, a, count > 255 ? 255 : (int)count);
            }
        }
    }

    /// <summary>Element shifts: a count at or beyond the element width gives 0 (logical) or the sign (arithmetic).</summary>
    private static Vector128<byte> Shift(PackedOp op, Vector128<byte> a, int count)
    {
        switch (op)
        {
            case PackedOp.Psllw: return count > 15 ? default : Vector128.ShiftLeft(a.AsUInt16(), count).AsByte();
            case PackedOp.Pslld: return count > 31 ? default : Vector128.ShiftLeft(a.AsUInt32(), count).AsByte();
            case PackedOp.Psllq: return count > 63 ? default : Vector128.ShiftLeft(a.AsUInt64(), count).AsByte();
            case PackedOp.Psrlw: return count > 15 ? default : Vector128.ShiftRightLogical(a.AsUInt16(), count).AsByte();
            case PackedOp.Psrld: return count > 31 ? default : Vector128.ShiftRightLogical(a.AsUInt32(), count).AsByte();
            case PackedOp.Psrlq: return count > 63 ? default : Vector128.ShiftRightLogical(a.AsUInt64(), count).AsByte();
            case PackedOp.Psraw: return Vector128.ShiftRightArithmetic(a.AsInt16(), Math.Min(count, 15)).AsByte();
            case PackedOp.Psrad: return Vector128.ShiftRightArithmetic(a.AsInt32(), Math.Min(count, 31)).AsByte();
            default: return a;
        }
    }

    /// <summary>PSLLDQ: shift the whole register left by imm8 bytes (imm8 &gt; 15 clears it).</summary>
    private static Vector128<byte> ByteShiftLeft(Vector128<byte> a, int bytes)
    {
        if (bytes > 15)
            return default;
        UInt128 v = Unsafe.As<Vector128<byte>, UInt128>(ref a) << (8 * bytes);
        return Unsafe.As<UInt128, Vector128<byte>>(ref v);
    }

    /// <summary>PSRLDQ: shift the whole register right by imm8 bytes.</summary>
    private static Vector128<byte> ByteShiftRight(Vector128<byte> a, int bytes)
    {
        if (bytes > 15)
            return default;
        UInt128 v = Unsafe.As<Vector128<byte>, UInt128>(ref a) >> (8 * bytes);
        return Unsafe.As<UInt128, Vector128<byte>>(ref v);
    }

    private static Vector128<byte> Saturate8(Vector128<byte> a, Vector128<byte> b, bool add, bool signed)
    {
        if (Sse2.IsSupported)
        {
            return (add, signed) switch
            {
                (true, true) => Sse2.AddSaturate(a.AsSByte(), b.AsSByte()).AsByte(),
                (true, false) => Sse2.AddSaturate(a, b),
                (false, true) => Sse2.SubtractSaturate(a.AsSByte(), b.AsSByte()).AsByte(),
                _ => Sse2.SubtractSaturate(a, b),
            };
        }
        Span<byte> r = stackalloc byte[16];
        for (int k = 0; k < 16; k++)
        {
            int x = signed ? (sbyte)a.GetElement(k) : a.GetElement(k);
            int y = signed ? (sbyte)b.GetElement(k) : b.GetElement(k);
            int v = add ? x + y : x - y;
            r[k] = signed ? (byte)(sbyte)Math.Clamp(v, -128, 127) : (byte)Math.Clamp(v, 0, 255);
        }
        return Vector128.Create((ReadOnlySpan<byte>)r);
    }

    private static Vector128<byte> Saturate16(Vector128<byte> a, Vector128<byte> b, bool add, bool signed)
    {
        if (Sse2.IsSupported)
        {
            return (add, signed) switch
            {
                (true, true) => Sse2.AddSaturate(a.AsInt16(), b.AsInt16()).AsByte(),
                (true, false) => Sse2.AddSaturate(a.AsUInt16(), b.AsUInt16()).AsByte(),
                (false, true) => Sse2.SubtractSaturate(a.AsInt16(), b.AsInt16()).AsByte(),
                _ => Sse2.SubtractSaturate(a.AsUInt16(), b.AsUInt16()).AsByte(),
            };
        }
        Span<ushort> r = stackalloc ushort[8];
        for (int k = 0; k < 8; k++)
        {
            int x = signed ? a.AsInt16().GetElement(k) : a.AsUInt16().GetElement(k);
            int y = signed ? b.AsInt16().GetElement(k) : b.AsUInt16().GetElement(k);
            int v = add ? x + y : x - y;
            r[k] = signed ? (ushort)(short)Math.Clamp(v, short.MinValue, short.MaxValue) : (ushort)Math.Clamp(v, 0, ushort.MaxValue);
        }
        return Vector128.Create((ReadOnlySpan<ushort>)r).AsByte();
    }

    private static Vector128<byte> MultiplyHigh(Vector128<byte> a, Vector128<byte> b, bool signed)
    {
        Span<ushort> r = stackalloc ushort[8];
        for (int k = 0; k < 8; k++)
        {
            int x = signed ? a.AsInt16().GetElement(k) : a.AsUInt16().GetElement(k);
            int y = signed ? b.AsInt16().GetElement(k) : b.AsUInt16().GetElement(k);
            r[k] = (ushort)((x * y) >> 16);
        }
        return Vector128.Create((ReadOnlySpan<ushort>)r).AsByte();
    }

    /// <summary>PUNPCKL*/PUNPCKH*: interleave the low (or high) halves' elements of a and b, a first.</summary>
    private static Vector128<byte> Interleave(Vector128<byte> a, Vector128<byte> b, int size, bool high)
    {
        Span<byte> r = stackalloc byte[16];
        int from = high ? 8 : 0;
        for (int e = 0; e < 8 / size; e++)
        {
            for (int k = 0; k < size; k++)
            {
                r[2 * e * size + k] = a.GetElement(from + e * size + k);
                r[(2 * e + 1) * size + k] = b.GetElement(from + e * size + k);
            }
        }
        return Vector128.Create((ReadOnlySpan<byte>)r);
    }

    private static Vector128<byte> PackSignedWords(Vector128<byte> a, Vector128<byte> b)
    {
        Span<byte> r = stackalloc byte[16];
        for (int k = 0; k < 8; k++)
        {
            r[k] = (byte)(sbyte)Math.Clamp((int)a.AsInt16().GetElement(k), -128, 127);
            r[k + 8] = (byte)(sbyte)Math.Clamp((int)b.AsInt16().GetElement(k), -128, 127);
        }
        return Vector128.Create((ReadOnlySpan<byte>)r);
    }

    private static Vector128<byte> PackUnsignedWords(Vector128<byte> a, Vector128<byte> b)
    {
        Span<byte> r = stackalloc byte[16];
        for (int k = 0; k < 8; k++)
        {
            r[k] = (byte)Math.Clamp((int)a.AsInt16().GetElement(k), 0, 255);
            r[k + 8] = (byte)Math.Clamp((int)b.AsInt16().GetElement(k), 0, 255);
        }
        return Vector128.Create((ReadOnlySpan<byte>)r);
    }

    private static Vector128<byte> PackSignedDwords(Vector128<byte> a, Vector128<byte> b)
    {
        Span<short> r = stackalloc short[8];
        for (int k = 0; k < 4; k++)
        {
            r[k] = (short)Math.Clamp(a.AsInt32().GetElement(k), short.MinValue, short.MaxValue);
            r[k + 4] = (short)Math.Clamp(b.AsInt32().GetElement(k), short.MinValue, short.MaxValue);
        }
        return Vector128.Create((ReadOnlySpan<short>)r).AsByte();
    }
}
