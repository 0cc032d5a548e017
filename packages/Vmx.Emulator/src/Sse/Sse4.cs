using System.Runtime.Intrinsics;
using Iced.Intel;
using VmmKit.Vmx.Emulator.Engine;
using RflagsBits = VmmKit.Vmx.Emulator.Engine.RflagsBits;

namespace VmmKit.Vmx.Emulator.Sse;

/// <summary>The integer and data-movement instructions of SSE3, SSSE3 (XMM forms), SSE4.1 and SSE4.2 (Sub of <see cref="Sse4"/> handlers).</summary>
internal enum Sse4Op : byte
{
    Movddup = 1, Movshdup, Movsldup, Lddqu, Movntdqa,
    Pblendvb, Blendvps, Blendvpd, Blendps, Blendpd, Pblendw,
    Pminsb, Pminsd, Pminuw, Pminud, Pmaxsb, Pmaxsd, Pmaxuw, Pmaxud,
    Pmulld, Pmuldq, Pcmpeqq, Pcmpgtq, Packusdw, Phminposuw, Mpsadbw, Insertps,
    Pmovsxbw, Pmovsxbd, Pmovsxbq, Pmovsxwd, Pmovsxwq, Pmovsxdq,
    Pmovzxbw, Pmovzxbd, Pmovzxbq, Pmovzxwd, Pmovzxwq, Pmovzxdq,
}

/// <summary>
/// SSE3 (MOVDDUP, MOVSHDUP, MOVSLDUP, LDDQU), SSSE3 (XMM forms, <see cref="Ssse3"/>), SSE4.1 and SSE4.2 integer
/// and data-movement instructions as element loops over the operand bytes — exact by construction, independent of
/// the host's SIMD level. SDM Vol. 2, each instruction's "Operation". The floating-point ones (ADDSUBPx, HADDPx,
/// HSUBPx, ROUNDxx) run on host thunks (<see cref="FloatThunks"/>), PCMPxSTRx in <see cref="StringCompare"/>.
/// </summary>
internal static unsafe class Sse4
{
    /// <summary>Registers <paramref name="code"/> when it belongs here; false otherwise.</summary>
    public static bool Register(HandlerEntry[] t, Code code, Mnemonic m, OpCodeInfo op)
    {
        Ssse3Op? s3 = m switch
        {
            Mnemonic.Pshufb => Ssse3Op.Pshufb, Mnemonic.Phaddw => Ssse3Op.Phaddw, Mnemonic.Phaddd => Ssse3Op.Phaddd,
            Mnemonic.Phaddsw => Ssse3Op.Phaddsw, Mnemonic.Phsubw => Ssse3Op.Phsubw, Mnemonic.Phsubd => Ssse3Op.Phsubd,
            Mnemonic.Phsubsw => Ssse3Op.Phsubsw, Mnemonic.Pmaddubsw => Ssse3Op.Pmaddubsw, Mnemonic.Pmulhrsw => Ssse3Op.Pmulhrsw,
            Mnemonic.Psignb => Ssse3Op.Psignb, Mnemonic.Psignw => Ssse3Op.Psignw, Mnemonic.Psignd => Ssse3Op.Psignd,
            Mnemonic.Pabsb => Ssse3Op.Pabsb, Mnemonic.Pabsw => Ssse3Op.Pabsw, Mnemonic.Pabsd => Ssse3Op.Pabsd,
            Mnemonic.Palignr => Ssse3Op.Palignr,
            _ => null,
        };
        if (s3 is Ssse3Op x)
        {
            HandlerTable.Set(t, code, &Ssse3.Xmm, sub: (byte)x);
            return true;
        }
        switch (m)
        {
            case Mnemonic.Pextrb: HandlerTable.Set(t, code, &Extract, sub: 1); return true;
            case Mnemonic.Pextrw when op.GetOpKind(0) is OpCodeOperandKind.r32_or_mem or OpCodeOperandKind.r64_or_mem:
                HandlerTable.Set(t, code, &Extract, sub: 2); return true;
            case Mnemonic.Pextrd or Mnemonic.Extractps: HandlerTable.Set(t, code, &Extract, sub: 4); return true;
            case Mnemonic.Pextrq: HandlerTable.Set(t, code, &Extract, sub: 8); return true;
            case Mnemonic.Pinsrb: HandlerTable.Set(t, code, &Insert, sub: 1); return true;
            case Mnemonic.Pinsrd: HandlerTable.Set(t, code, &Insert, sub: 4); return true;
            case Mnemonic.Pinsrq: HandlerTable.Set(t, code, &Insert, sub: 8); return true;
            case Mnemonic.Ptest: HandlerTable.Set(t, code, &Ptest); return true;
            case Mnemonic.Dpps: HandlerTable.Set(t, code, &DotProduct.Execute, sub: 4); return true;
            case Mnemonic.Dppd: HandlerTable.Set(t, code, &DotProduct.Execute, sub: 8); return true;
            case Mnemonic.Pcmpestri or Mnemonic.Pcmpestrm or Mnemonic.Pcmpistri or Mnemonic.Pcmpistrm
                or Mnemonic.Pcmpestri64 or Mnemonic.Pcmpestrm64:
            {
                byte sub = (byte)((m is Mnemonic.Pcmpestri or Mnemonic.Pcmpestrm or Mnemonic.Pcmpestri64 or Mnemonic.Pcmpestrm64 ? StringCompare.Explicit : 0)
                    | (m is Mnemonic.Pcmpestrm or Mnemonic.Pcmpistrm or Mnemonic.Pcmpestrm64 ? StringCompare.Mask : 0)
                    | (m is Mnemonic.Pcmpestri64 or Mnemonic.Pcmpestrm64 ? StringCompare.Wide : 0));
                HandlerTable.Set(t, code, &StringCompare.Execute, sub: sub);
                return true;
            }
        }
        Sse4Op? s4 = m switch
        {
            Mnemonic.Movddup => Sse4Op.Movddup, Mnemonic.Movshdup => Sse4Op.Movshdup, Mnemonic.Movsldup => Sse4Op.Movsldup,
            Mnemonic.Lddqu => Sse4Op.Lddqu, Mnemonic.Movntdqa => Sse4Op.Movntdqa,
            Mnemonic.Pblendvb => Sse4Op.Pblendvb, Mnemonic.Blendvps => Sse4Op.Blendvps, Mnemonic.Blendvpd => Sse4Op.Blendvpd,
            Mnemonic.Blendps => Sse4Op.Blendps, Mnemonic.Blendpd => Sse4Op.Blendpd, Mnemonic.Pblendw => Sse4Op.Pblendw,
            Mnemonic.Pminsb => Sse4Op.Pminsb, Mnemonic.Pminsd => Sse4Op.Pminsd, Mnemonic.Pminuw => Sse4Op.Pminuw,
            Mnemonic.Pminud => Sse4Op.Pminud, Mnemonic.Pmaxsb => Sse4Op.Pmaxsb, Mnemonic.Pmaxsd => Sse4Op.Pmaxsd,
            Mnemonic.Pmaxuw => Sse4Op.Pmaxuw, Mnemonic.Pmaxud => Sse4Op.Pmaxud, Mnemonic.Pmulld => Sse4Op.Pmulld,
            Mnemonic.Pmuldq => Sse4Op.Pmuldq, Mnemonic.Pcmpeqq => Sse4Op.Pcmpeqq, Mnemonic.Pcmpgtq => Sse4Op.Pcmpgtq,
            Mnemonic.Packusdw => Sse4Op.Packusdw, Mnemonic.Phminposuw => Sse4Op.Phminposuw, Mnemonic.Mpsadbw => Sse4Op.Mpsadbw,
            Mnemonic.Insertps => Sse4Op.Insertps,
            Mnemonic.Pmovsxbw => Sse4Op.Pmovsxbw, Mnemonic.Pmovsxbd => Sse4Op.Pmovsxbd, Mnemonic.Pmovsxbq => Sse4Op.Pmovsxbq,
            Mnemonic.Pmovsxwd => Sse4Op.Pmovsxwd, Mnemonic.Pmovsxwq => Sse4Op.Pmovsxwq, Mnemonic.Pmovsxdq => Sse4Op.Pmovsxdq,
            Mnemonic.Pmovzxbw => Sse4Op.Pmovzxbw, Mnemonic.Pmovzxbd => Sse4Op.Pmovzxbd, Mnemonic.Pmovzxbq => Sse4Op.Pmovzxbq,
            Mnemonic.Pmovzxwd => Sse4Op.Pmovzxwd, Mnemonic.Pmovzxwq => Sse4Op.Pmovzxwq, Mnemonic.Pmovzxdq => Sse4Op.Pmovzxdq,
            _ => null,
        };
        if (s4 is not Sse4Op y)
            return false;
        HandlerTable.Set(t, code, &Binary, sub: (byte)y);
        return true;
    }

    /// <summary><c>op xmm, xmm/mN [, imm8]</c>: source of the form's memory size (16 bytes aligned except LDDQU).</summary>
    public static int Binary(Core c, Instr* i)
    {
        int st = SseState.Check(c);
        if (st != ExecStatus.Continue)
            return st;
        Sse4Op op = (Sse4Op)i->Sub;
        Vector128<byte> b;
        bool ok = i->Op1 == Instr.MemoryOperand && i->MemSize < 16
            ? SseState.ScalarSource(c, i, i->Op1, i->MemSize, out b)
            : SseState.Source(c, i, i->Op1, aligned: op != Sse4Op.Lddqu, out b);
        if (!ok)
            return ExecStatus.Event;
        ref var dref = ref SseState.X(c, i->Op0);
        Vector128<byte> d = dref, mask = SseState.X(c, 0), r = default;
        Compute(op, (byte*)&d, (byte*)&b, (byte*)&mask, (byte*)&r, (byte)i->Imm, i->Op1 == Instr.MemoryOperand);
        dref = r;
        return ExecStatus.Continue;
    }

    private static void Compute(Sse4Op op, byte* d, byte* s, byte* x0, byte* r, int imm, bool memory)
    {
        short* dw = (short*)d, sw = (short*)s, rw = (short*)r;
        int* dd = (int*)d, sd = (int*)s, rd = (int*)r;
        long* dq = (long*)d, sq = (long*)s, rq = (long*)r;
        switch (op)
        {
            case Sse4Op.Movddup: rq[0] = rq[1] = sq[0]; break;
            case Sse4Op.Movshdup: rd[0] = rd[1] = sd[1]; rd[2] = rd[3] = sd[3]; break;
            case Sse4Op.Movsldup: rd[0] = rd[1] = sd[0]; rd[2] = rd[3] = sd[2]; break;
            case Sse4Op.Lddqu or Sse4Op.Movntdqa: rq[0] = sq[0]; rq[1] = sq[1]; break;
            case Sse4Op.Pblendvb:
                for (int k = 0; k < 16; k++) r[k] = (x0[k] & 0x80) != 0 ? s[k] : d[k];
                break;
            case Sse4Op.Blendvps:
                for (int k = 0; k < 4; k++) rd[k] = ((int*)x0)[k] < 0 ? sd[k] : dd[k];
                break;
            case Sse4Op.Blendvpd:
                for (int k = 0; k < 2; k++) rq[k] = ((long*)x0)[k] < 0 ? sq[k] : dq[k];
                break;
            case Sse4Op.Blendps:
                for (int k = 0; k < 4; k++) rd[k] = (imm >> k & 1) != 0 ? sd[k] : dd[k];
                break;
            case Sse4Op.Blendpd:
                for (int k = 0; k < 2; k++) rq[k] = (imm >> k & 1) != 0 ? sq[k] : dq[k];
                break;
            case Sse4Op.Pblendw:
                for (int k = 0; k < 8; k++) rw[k] = (imm >> k & 1) != 0 ? sw[k] : dw[k];
                break;
            case Sse4Op.Pminsb: for (int k = 0; k < 16; k++) r[k] = (byte)Math.Min((sbyte)d[k], (sbyte)s[k]); break;
            case Sse4Op.Pmaxsb: for (int k = 0; k < 16; k++) r[k] = (byte)Math.Max((sbyte)d[k], (sbyte)s[k]); break;
            case Sse4Op.Pminuw: for (int k = 0; k < 8; k++) rw[k] = (short)Math.Min((ushort)dw[k], (ushort)sw[k]); break;
            case Sse4Op.Pmaxuw: for (int k = 0; k < 8; k++) rw[k] = (short)Math.Max((ushort)dw[k], (ushort)sw[k]); break;
            case Sse4Op.Pminsd: for (int k = 0; k < 4; k++) rd[k] = Math.Min(dd[k], sd[k]); break;
            case Sse4Op.Pmaxsd: for (int k = 0; k < 4; k++) rd[k] = Math.Max(dd[k], sd[k]); break;
            case Sse4Op.Pminud: for (int k = 0; k < 4; k++) rd[k] = (int)Math.Min((uint)dd[k], (uint)sd[k]); break;
            case Sse4Op.Pmaxud: for (int k = 0; k < 4; k++) rd[k] = (int)Math.Max((uint)dd[k], (uint)sd[k]); break;
            case Sse4Op.Pmulld: for (int k = 0; k < 4; k++) rd[k] = dd[k] * sd[k]; break;
            case Sse4Op.Pmuldq: rq[0] = (long)dd[0] * sd[0]; rq[1] = (long)dd[2] * sd[2]; break;
            case Sse4Op.Pcmpeqq: for (int k = 0; k < 2; k++) rq[k] = dq[k] == sq[k] ? -1 : 0; break;
            case Sse4Op.Pcmpgtq: for (int k = 0; k < 2; k++) rq[k] = dq[k] > sq[k] ? -1 : 0; break;
            case Sse4Op.Packusdw:
                for (int k = 0; k < 4; k++)
                {
                    rw[k] = (short)(ushort)Math.Clamp(dd[k], 0, 0xFFFF);
                    rw[4 + k] = (short)(ushort)Math.Clamp(sd[k], 0, 0xFFFF);
                }
                break;
            case Sse4Op.Phminposuw:
            {
                // The smallest unsigned word and its index (the lowest index among equal minima); the rest zeroed.
                int index = 0;
                for (int k = 1; k < 8; k++)
                    if ((ushort)sw[k] < (ushort)sw[index]) index = k;
                rw[0] = sw[index];
                rw[1] = (short)index;
                break;
            }
            case Sse4Op.Mpsadbw:
            {
                // Eight sums of absolute differences of 4-byte blocks: destination bytes from offset imm8[2]*4,
                // the source block at imm8[1:0]*4.
                int dOff = (imm >> 2 & 1) * 4, sOff = (imm & 3) * 4;
                for (int k = 0; k < 8; k++)
                {
                    int sum = 0;
                    for (int j = 0; j < 4; j++)
                        sum += Math.Abs(d[dOff + k + j] - s[sOff + j]);
                    rw[k] = (short)sum;
                }
                break;
            }
            case Sse4Op.Insertps:
            {
                // Source element imm8[7:6] (a memory source is the m32 itself), destination element imm8[5:4],
                // then the elements set in imm8[3:0] zeroed.
                int element = memory ? sd[0] : sd[imm >> 6 & 3];
                for (int k = 0; k < 4; k++) rd[k] = dd[k];
                rd[imm >> 4 & 3] = element;
                for (int k = 0; k < 4; k++)
                    if ((imm >> k & 1) != 0) rd[k] = 0;
                break;
            }
            case Sse4Op.Pmovsxbw: for (int k = 0; k < 8; k++) rw[k] = (sbyte)s[k]; break;
            case Sse4Op.Pmovsxbd: for (int k = 0; k < 4; k++) rd[k] = (sbyte)s[k]; break;
            case Sse4Op.Pmovsxbq: for (int k = 0; k < 2; k++) rq[k] = (sbyte)s[k]; break;
            case Sse4Op.Pmovsxwd: for (int k = 0; k < 4; k++) rd[k] = sw[k]; break;
            case Sse4Op.Pmovsxwq: for (int k = 0; k < 2; k++) rq[k] = sw[k]; break;
            case Sse4Op.Pmovsxdq: for (int k = 0; k < 2; k++) rq[k] = sd[k]; break;
            case Sse4Op.Pmovzxbw: for (int k = 0; k < 8; k++) rw[k] = s[k]; break;
            case Sse4Op.Pmovzxbd: for (int k = 0; k < 4; k++) rd[k] = s[k]; break;
            case Sse4Op.Pmovzxbq: for (int k = 0; k < 2; k++) rq[k] = s[k]; break;
            case Sse4Op.Pmovzxwd: for (int k = 0; k < 4; k++) rd[k] = (ushort)sw[k]; break;
            case Sse4Op.Pmovzxwq: for (int k = 0; k < 2; k++) rq[k] = (ushort)sw[k]; break;
            case Sse4Op.Pmovzxdq: for (int k = 0; k < 2; k++) rq[k] = (uint)sd[k]; break;
        }
    }

    /// <summary>
    /// PEXTRB/PEXTRW (r/m form)/PEXTRD/PEXTRQ/EXTRACTPS r/m, xmm, imm8 (Sub = element size): the element
    /// imm8 selects, zero-extended into a register destination, or stored with its own size.
    /// </summary>
    public static int Extract(Core c, Instr* i)
    {
        int st = SseState.Check(c);
        if (st != ExecStatus.Continue)
            return st;
        int size = i->Sub;
        int index = (int)(i->Imm & (ulong)(16 / size - 1));
        var v = SseState.X(c, i->Op1);
        ulong e = 0;
        new ReadOnlySpan<byte>((byte*)&v + index * size, size).CopyTo(new Span<byte>(&e, 8));
        if (i->Op0 == Instr.MemoryOperand)
            return c.Write(c.LinearAddress(i), size, e) ? ExecStatus.Continue : ExecStatus.Event;
        c.SetReg(i->Op0, i->OpSize, e);
        return ExecStatus.Continue;
    }

    /// <summary>PINSRB/PINSRD/PINSRQ xmm, r/m, imm8 (Sub = element size).</summary>
    public static int Insert(Core c, Instr* i)
    {
        int st = SseState.Check(c);
        if (st != ExecStatus.Continue)
            return st;
        int size = i->Sub;
        ulong e;
        if (i->Op1 == Instr.MemoryOperand)
        {
            if (!c.Read(c.LinearAddress(i), size, out e))
                return ExecStatus.Event;
        }
        else
        {
            e = c.GetReg(i->Op1, size == 8 ? 8 : 4);
        }
        int index = (int)(i->Imm & (ulong)(16 / size - 1));
        ref var d = ref SseState.X(c, i->Op0);
        var v = d;
        new ReadOnlySpan<byte>(&e, size).CopyTo(new Span<byte>((byte*)&v + index * size, size));
        d = v;
        return ExecStatus.Continue;
    }

    /// <summary>PTEST: ZF = (dest AND src) = 0, CF = (NOT dest AND src) = 0; AF, OF, PF, SF cleared.</summary>
    public static int Ptest(Core c, Instr* i)
    {
        int st = SseState.Check(c);
        if (st != ExecStatus.Continue)
            return st;
        if (!SseState.Source(c, i, i->Op1, aligned: true, out var s))
            return ExecStatus.Event;
        var d = SseState.X(c, i->Op0);
        ulong f = ((d & s) == Vector128<byte>.Zero ? RflagsBits.ZF : 0) | ((~d & s) == Vector128<byte>.Zero ? RflagsBits.CF : 0);
        LazyFlags.SetEager(ref c.S, RflagsBits.Arith, f);
        return ExecStatus.Continue;
    }
}
