using System.Runtime.Intrinsics;
using Iced.Intel;
using VmmKit.Vmx.Emulator.Engine;
using VmmKit.Vmx.Emulator.Sse;

namespace VmmKit.Vmx.Emulator.Fpu;

/// <summary>
/// MMX instructions (SDM Vol. 1 chapter 9) and the SSE/SSSE3 forms on MMX registers. MMi is the significand of
/// physical x87 register Ri; every MMX instruction but EMMS sets TOP to 0 and all tags valid, and a write to MMi sets
/// bits 79:64 of Ri to all ones (§9.5.1 "MMX instructions and the x87 FPU tag word", table 9-?). The register fields
/// come from the ModR/M byte (<see cref="FpuAccess.OpcodeAndModRm"/>).
/// </summary>
internal static unsafe class Mmx
{
    private const byte SsseBase = 0x80;

    /// <summary>Registers every MMX form.</summary>
    public static void Register(HandlerEntry[] t)
    {
        foreach (Code code in Enum.GetValues<Code>())
        {
            var op = code.ToOpCode();
            if (op.Encoding != EncodingKind.Legacy || !op.Mode64 && !op.Mode32)
                continue;
            bool mm = false;
            for (int k = 0; k < op.OpCount; k++)
                mm |= op.GetOpKind(k) is OpCodeOperandKind.mm_reg or OpCodeOperandKind.mm_rm or OpCodeOperandKind.mm_or_mem;
            if (!mm || code.ToString().StartsWith("D3NOW", StringComparison.Ordinal))
                continue;
            RegisterOne(t, code, code.Mnemonic(), op);
        }
        HandlerTable.Set(t, Code.Emms, &Emms);
    }

    private static void RegisterOne(HandlerEntry[] t, Code code, Mnemonic m, OpCodeInfo op)
    {
        var k0 = op.GetOpKind(0);
        var k1 = op.OpCount > 1 ? op.GetOpKind(1) : OpCodeOperandKind.None;
        switch (m)
        {
            case Mnemonic.Movd or Mnemonic.Movq or Mnemonic.Movntq:
                if (k0 == OpCodeOperandKind.mm_reg && k1 is OpCodeOperandKind.r32_or_mem or OpCodeOperandKind.r64_or_mem)
                    HandlerTable.Set(t, code, &FromGpr, sub: (byte)(k1 == OpCodeOperandKind.r32_or_mem ? 4 : 8));
                else if (k1 == OpCodeOperandKind.mm_reg && k0 is OpCodeOperandKind.r32_or_mem or OpCodeOperandKind.r64_or_mem)
                    HandlerTable.Set(t, code, &ToGpr, sub: (byte)(k0 == OpCodeOperandKind.r32_or_mem ? 4 : 8));
                else if (k0 == OpCodeOperandKind.mm_reg)
                    HandlerTable.Set(t, code, &Load);
                else
                    HandlerTable.Set(t, code, &Store);
                return;
            case Mnemonic.Movq2dq: HandlerTable.Set(t, code, &Movq2dq); return;
            case Mnemonic.Movdq2q: HandlerTable.Set(t, code, &Movdq2q); return;
            case Mnemonic.Pmovmskb: HandlerTable.Set(t, code, &MoveMask); return;
            case Mnemonic.Pextrw: HandlerTable.Set(t, code, &Pextrw); return;
            case Mnemonic.Pinsrw: HandlerTable.Set(t, code, &Pinsrw); return;
            case Mnemonic.Pshufw: HandlerTable.Set(t, code, &Pshufw); return;
        }
        Ssse3Op? ssse3 = m switch
        {
            Mnemonic.Pshufb => Ssse3Op.Pshufb, Mnemonic.Phaddw => Ssse3Op.Phaddw, Mnemonic.Phaddd => Ssse3Op.Phaddd,
            Mnemonic.Phaddsw => Ssse3Op.Phaddsw, Mnemonic.Phsubw => Ssse3Op.Phsubw, Mnemonic.Phsubd => Ssse3Op.Phsubd,
            Mnemonic.Phsubsw => Ssse3Op.Phsubsw, Mnemonic.Pmaddubsw => Ssse3Op.Pmaddubsw, Mnemonic.Pmulhrsw => Ssse3Op.Pmulhrsw,
            Mnemonic.Psignb => Ssse3Op.Psignb, Mnemonic.Psignw => Ssse3Op.Psignw, Mnemonic.Psignd => Ssse3Op.Psignd,
            Mnemonic.Pabsb => Ssse3Op.Pabsb, Mnemonic.Pabsw => Ssse3Op.Pabsw, Mnemonic.Pabsd => Ssse3Op.Pabsd,
            Mnemonic.Palignr => Ssse3Op.Palignr,
            _ => null,
        };
        if (ssse3 is Ssse3Op s)
        {
            HandlerTable.Set(t, code, &Binary, sub: (byte)(SsseBase + (byte)s));
            return;
        }
        PackedOp? p = m switch
        {
            Mnemonic.Paddb => PackedOp.Paddb, Mnemonic.Paddw => PackedOp.Paddw, Mnemonic.Paddd => PackedOp.Paddd,
            Mnemonic.Paddq => PackedOp.Paddq, Mnemonic.Paddsb => PackedOp.Paddsb, Mnemonic.Paddsw => PackedOp.Paddsw,
            Mnemonic.Paddusb => PackedOp.Paddusb, Mnemonic.Paddusw => PackedOp.Paddusw,
            Mnemonic.Psubb => PackedOp.Psubb, Mnemonic.Psubw => PackedOp.Psubw, Mnemonic.Psubd => PackedOp.Psubd,
            Mnemonic.Psubq => PackedOp.Psubq, Mnemonic.Psubsb => PackedOp.Psubsb, Mnemonic.Psubsw => PackedOp.Psubsw,
            Mnemonic.Psubusb => PackedOp.Psubusb, Mnemonic.Psubusw => PackedOp.Psubusw,
            Mnemonic.Pand => PackedOp.Pand, Mnemonic.Pandn => PackedOp.Pandn, Mnemonic.Por => PackedOp.Por, Mnemonic.Pxor => PackedOp.Pxor,
            Mnemonic.Pcmpeqb => PackedOp.Pcmpeqb, Mnemonic.Pcmpeqw => PackedOp.Pcmpeqw, Mnemonic.Pcmpeqd => PackedOp.Pcmpeqd,
            Mnemonic.Pcmpgtb => PackedOp.Pcmpgtb, Mnemonic.Pcmpgtw => PackedOp.Pcmpgtw, Mnemonic.Pcmpgtd => PackedOp.Pcmpgtd,
            Mnemonic.Pminub => PackedOp.Pminub, Mnemonic.Pmaxub => PackedOp.Pmaxub, Mnemonic.Pminsw => PackedOp.Pminsw,
            Mnemonic.Pmaxsw => PackedOp.Pmaxsw, Mnemonic.Pmullw => PackedOp.Pmullw, Mnemonic.Pmulhw => PackedOp.Pmulhw,
            Mnemonic.Pmulhuw => PackedOp.Pmulhuw, Mnemonic.Pmuludq => PackedOp.Pmuludq,
            Mnemonic.Punpcklbw => PackedOp.Punpcklbw, Mnemonic.Punpcklwd => PackedOp.Punpcklwd, Mnemonic.Punpckldq => PackedOp.Punpckldq,
            Mnemonic.Punpckhbw => PackedOp.Punpckhbw, Mnemonic.Punpckhwd => PackedOp.Punpckhwd, Mnemonic.Punpckhdq => PackedOp.Punpckhdq,
            Mnemonic.Packsswb => PackedOp.Packsswb, Mnemonic.Packssdw => PackedOp.Packssdw, Mnemonic.Packuswb => PackedOp.Packuswb,
            Mnemonic.Psllw => PackedOp.Psllw, Mnemonic.Pslld => PackedOp.Pslld, Mnemonic.Psllq => PackedOp.Psllq,
            Mnemonic.Psrlw => PackedOp.Psrlw, Mnemonic.Psrld => PackedOp.Psrld, Mnemonic.Psrlq => PackedOp.Psrlq,
            Mnemonic.Psraw => PackedOp.Psraw, Mnemonic.Psrad => PackedOp.Psrad,
            Mnemonic.Pavgb => PackedOp.Pavgb, Mnemonic.Pavgw => PackedOp.Pavgw, Mnemonic.Psadbw => PackedOp.Psadbw,
            Mnemonic.Pmaddwd => PackedOp.Pmaddwd,
            _ => null,
        };
        if (p is not PackedOp packed)
            return;
        if (k1 == OpCodeOperandKind.imm8)
            HandlerTable.Set(t, code, &ShiftImmediate, sub: (byte)packed);
        else
            HandlerTable.Set(t, code, &Binary, sub: (byte)packed);
    }

    // ------------------------------------------------------------------ register access

    private static ref FpuState F(Core c) => ref c.S.Fpu;

    /// <summary>MMX transition: TOP = 0, every tag valid (§9.5.1).</summary>
    private static void Enter(Core c)
    {
        ref FpuState f = ref c.S.Fpu;
        f.Fsw = (ushort)(f.Fsw & ~0x3800);
        f.Ftw = 0xFF;
    }

    private static void Write(Core c, int mm, ulong value)
    {
        ref FpuState f = ref c.S.Fpu;
        f.Mantissa(mm) = value;
        f.Exponent(mm) = 0xFFFF;
    }

    /// <summary>Checks, then decodes the ModR/M fields: reg (bits 5:3) and rm (bits 2:0).</summary>
    private static int Prologue(Core c, Instr* i, out int reg, out int rm)
    {
        reg = rm = 0;
        int st = FpuAccess.CheckMmx(c);
        if (st != ExecStatus.Continue)
            return st;
        int v = FpuAccess.OpcodeAndModRm(c, i);
        if (v < 0)
            return ExecStatus.Event;
        reg = (v >> 3) & 7;
        rm = v & 7;
        return ExecStatus.Continue;
    }

    /// <summary>The mm/m64 (or m32) source: MM[rm] or memory of the form's size.</summary>
    private static bool Source(Core c, Instr* i, int rm, out ulong value)
    {
        if (i->Op1 != Instr.MemoryOperand)
        {
            value = F(c).Mantissa(rm);
            return true;
        }
        return c.Read(c.LinearAddress(i), i->MemSize == 4 ? 4 : 8, out value);
    }

    // ------------------------------------------------------------------ handlers

    /// <summary><c>op mm, mm/m64</c>: SSE2 packed operations on 64 bits and the SSSE3 operations (Sub &gt;= 0x80).</summary>
    public static int Binary(Core c, Instr* i)
    {
        int st = Prologue(c, i, out int reg, out int rm);
        if (st != ExecStatus.Continue)
            return st;
        if (!Source(c, i, rm, out ulong b))
            return ExecStatus.Event;
        ulong a = F(c).Mantissa(reg);
        ulong r;
        if (i->Sub >= SsseBase)
        {
            Ssse3.Compute((Ssse3Op)(i->Sub - SsseBase), (byte*)&a, (byte*)&b, 8, (byte)i->Imm);
            r = a;
        }
        else
        {
            r = Compute64((PackedOp)i->Sub, a, b);
        }
        Enter(c);
        Write(c, reg, r);
        return ExecStatus.Continue;
    }

    /// <summary>The 64-bit result of an SSE2 packed operation applied to MMX operands.</summary>
    private static ulong Compute64(PackedOp op, ulong a, ulong b)
    {
        switch (op)
        {
            case PackedOp.Punpckhbw: return Low(PackedOp.Punpcklbw, a >> 32, b >> 32);
            case PackedOp.Punpckhwd: return Low(PackedOp.Punpcklwd, a >> 32, b >> 32);
            case PackedOp.Punpckhdq: return Low(PackedOp.Punpckldq, a >> 32, b >> 32);
            case PackedOp.Packsswb or PackedOp.Packssdw or PackedOp.Packuswb:
                // Both operands' elements side by side, packed in one 128-bit step.
                return PackedInteger.Compute(op, Vector128.Create(a, b).AsByte(), default).AsUInt64().GetElement(0);
            default: return Low(op, a, b);
        }
    }

    private static ulong Low(PackedOp op, ulong a, ulong b) =>
        PackedInteger.Compute(op, Vector128.CreateScalar(a).AsByte(), Vector128.CreateScalar(b).AsByte()).AsUInt64().GetElement(0);

    /// <summary>PSLLW/D/Q, PSRLW/D/Q, PSRAW/D mm, imm8.</summary>
    public static int ShiftImmediate(Core c, Instr* i)
    {
        int st = Prologue(c, i, out _, out int rm);
        if (st != ExecStatus.Continue)
            return st;
        ulong r = Low((PackedOp)i->Sub, F(c).Mantissa(rm), (byte)i->Imm);
        Enter(c);
        Write(c, rm, r);
        return ExecStatus.Continue;
    }

    /// <summary>MOVD/MOVQ mm, r/m32 | r/m64 (zero-extended).</summary>
    public static int FromGpr(Core c, Instr* i)
    {
        int st = Prologue(c, i, out int reg, out _);
        if (st != ExecStatus.Continue)
            return st;
        ulong v;
        if (i->Op1 == Instr.MemoryOperand)
        {
            if (!c.Read(c.LinearAddress(i), i->Sub, out v))
                return ExecStatus.Event;
        }
        else
        {
            v = c.GetReg(i->Op1, i->Sub);
        }
        Enter(c);
        Write(c, reg, v);
        return ExecStatus.Continue;
    }

    /// <summary>MOVD/MOVQ r/m32 | r/m64, mm.</summary>
    public static int ToGpr(Core c, Instr* i)
    {
        int st = Prologue(c, i, out int reg, out _);
        if (st != ExecStatus.Continue)
            return st;
        ulong v = F(c).Mantissa(reg);
        if (i->Op0 == Instr.MemoryOperand)
        {
            if (!c.Write(c.LinearAddress(i), i->Sub, v))
                return ExecStatus.Event;
        }
        else
        {
            c.SetReg(i->Op0, i->Sub, v);
        }
        Enter(c);
        return ExecStatus.Continue;
    }

    /// <summary>MOVQ mm, mm/m64.</summary>
    public static int Load(Core c, Instr* i)
    {
        int st = Prologue(c, i, out int reg, out int rm);
        if (st != ExecStatus.Continue)
            return st;
        if (!Source(c, i, rm, out ulong v))
            return ExecStatus.Event;
        Enter(c);
        Write(c, reg, v);
        return ExecStatus.Continue;
    }

    /// <summary>MOVQ mm/m64, mm and MOVNTQ m64, mm.</summary>
    public static int Store(Core c, Instr* i)
    {
        int st = Prologue(c, i, out int reg, out int rm);
        if (st != ExecStatus.Continue)
            return st;
        ulong v = F(c).Mantissa(reg);
        if (i->Op0 == Instr.MemoryOperand)
        {
            if (!c.Write(c.LinearAddress(i), 8, v))
                return ExecStatus.Event;
            Enter(c);
        }
        else
        {
            Enter(c);
            Write(c, rm, v);
        }
        return ExecStatus.Continue;
    }

    /// <summary>MOVQ2DQ xmm, mm (SSE2): XMM[127:64] cleared.</summary>
    public static int Movq2dq(Core c, Instr* i)
    {
        int st = SseState.Check(c);
        if (st != ExecStatus.Continue)
            return st;
        st = Prologue(c, i, out _, out int rm);
        if (st != ExecStatus.Continue)
            return st;
        c.S.XmmLow(i->Op0) = F(c).Mantissa(rm);
        c.S.XmmHigh(i->Op0) = 0;
        Enter(c);
        return ExecStatus.Continue;
    }

    /// <summary>MOVDQ2Q mm, xmm (SSE2).</summary>
    public static int Movdq2q(Core c, Instr* i)
    {
        int st = SseState.Check(c);
        if (st != ExecStatus.Continue)
            return st;
        st = Prologue(c, i, out int reg, out _);
        if (st != ExecStatus.Continue)
            return st;
        ulong v = c.S.XmmLow(i->Op1);
        Enter(c);
        Write(c, reg, v);
        return ExecStatus.Continue;
    }

    /// <summary>PMOVMSKB r32/r64, mm (SSE).</summary>
    public static int MoveMask(Core c, Instr* i)
    {
        int st = Prologue(c, i, out _, out int rm);
        if (st != ExecStatus.Continue)
            return st;
        ulong v = F(c).Mantissa(rm);
        uint mask = 0;
        for (int k = 0; k < 8; k++)
            mask |= (uint)((v >> (8 * k + 7)) & 1) << k;
        c.SetReg(i->Op0, i->OpSize, mask);
        Enter(c);
        return ExecStatus.Continue;
    }

    /// <summary>PEXTRW r32/r64, mm, imm8 (SSE): word imm8[1:0], zero-extended.</summary>
    public static int Pextrw(Core c, Instr* i)
    {
        int st = Prologue(c, i, out _, out int rm);
        if (st != ExecStatus.Continue)
            return st;
        ulong v = (F(c).Mantissa(rm) >> (16 * (int)(i->Imm & 3))) & 0xFFFF;
        c.SetReg(i->Op0, i->OpSize, v);
        Enter(c);
        return ExecStatus.Continue;
    }

    /// <summary>PINSRW mm, r32/m16, imm8 (SSE).</summary>
    public static int Pinsrw(Core c, Instr* i)
    {
        int st = Prologue(c, i, out int reg, out _);
        if (st != ExecStatus.Continue)
            return st;
        ulong w;
        if (i->Op1 == Instr.MemoryOperand)
        {
            if (!c.Read(c.LinearAddress(i), 2, out w))
                return ExecStatus.Event;
        }
        else
        {
            w = c.GetReg(i->Op1, 4) & 0xFFFF;
        }
        int shift = 16 * (int)(i->Imm & 3);
        ulong v = (F(c).Mantissa(reg) & ~(0xFFFFUL << shift)) | (w << shift);
        Enter(c);
        Write(c, reg, v);
        return ExecStatus.Continue;
    }

    /// <summary>PSHUFW mm, mm/m64, imm8 (SSE).</summary>
    public static int Pshufw(Core c, Instr* i)
    {
        int st = Prologue(c, i, out int reg, out int rm);
        if (st != ExecStatus.Continue)
            return st;
        if (!Source(c, i, rm, out ulong s))
            return ExecStatus.Event;
        ulong r = 0;
        for (int k = 0; k < 4; k++)
            r |= ((s >> (16 * (int)((i->Imm >> (2 * k)) & 3))) & 0xFFFF) << (16 * k);
        Enter(c);
        Write(c, reg, r);
        return ExecStatus.Continue;
    }

    /// <summary>EMMS: every tag empty and TOP = 0 (§9.5.1 table 9-2, §9.6.3). #UD with CR0.EM, #NM with CR0.TS, #MF for a pending x87 exception.</summary>
    public static int Emms(Core c, Instr* i)
    {
        int st = FpuAccess.CheckMmx(c);
        if (st != ExecStatus.Continue)
            return st;
        Enter(c);
        c.S.Fpu.Ftw = 0;
        return ExecStatus.Continue;
    }
}
