using System.Runtime.Intrinsics.X86;
using Iced.Intel;
using VmmKit.Vmx.Emulator.Sse;

namespace VmmKit.Vmx.Emulator.Engine;

/// <summary>The SSE/SSE2 subset's entries in the handler table (the engine's <c>RegisterSse</c> seam).</summary>
internal static unsafe partial class HandlerTable
{
    static partial void RegisterSse(HandlerEntry[] table)
    {
        foreach (Code code in Enum.GetValues<Code>())
        {
            var op = code.ToOpCode();
            if (op.Encoding != EncodingKind.Legacy || !op.Mode64 && !op.Mode32 || !UsesOnlySseOperands(op))
                continue;
            RegisterSseForm(table, code, op);
        }
        FloatThunks.Build();
        VmmKit.Vmx.Emulator.Fpu.FpuRegistration.Register(table);
        BitManipulation.Register(table);
    }

    private static bool UsesOnlySseOperands(OpCodeInfo op)
    {
        bool xmm = false;
        for (int k = 0; k < op.OpCount; k++)
        {
            switch (op.GetOpKind(k))
            {
                case OpCodeOperandKind.xmm_reg:
                case OpCodeOperandKind.xmm_rm:
                case OpCodeOperandKind.xmm_or_mem:
                    xmm = true;
                    break;
                case OpCodeOperandKind.r32_or_mem:
                case OpCodeOperandKind.r64_or_mem:
                case OpCodeOperandKind.r32_reg:
                case OpCodeOperandKind.r64_reg:
                case OpCodeOperandKind.mem:
                case OpCodeOperandKind.imm8:
                    break;
                default:
                    return false;
            }
        }
        return xmm || op.Code is Code.Ldmxcsr_m32 or Code.Stmxcsr_m32;
    }

    private static void RegisterSseForm(HandlerEntry[] table, Code code, OpCodeInfo op)
    {
        Mnemonic m = code.Mnemonic();
        switch (m)
        {
            // ---- moves
            case Mnemonic.Movaps or Mnemonic.Movapd or Mnemonic.Movdqa:
                Set(table, code, &Moves.Move128, sub: 1);
                return;
            case Mnemonic.Movntps or Mnemonic.Movntpd or Mnemonic.Movntdq:
                // Non-temporal stores: the hint has no architectural effect; alignment is still required.
                Set(table, code, &Moves.Move128, sub: 1);
                return;
            case Mnemonic.Pextrw:
                // The r/m16 destination form (66 0F 3A 15) is SSE4.1 (Sse4.cs).
                if (op.GetOpKind(0) is OpCodeOperandKind.r32_reg or OpCodeOperandKind.r64_reg)
                    Set(table, code, &Moves.Pextrw);
                else
                    Sse4.Register(table, code, m, op);
                return;
            case Mnemonic.Pinsrw:
                Set(table, code, &Moves.Pinsrw);
                return;
            case Mnemonic.Movups or Mnemonic.Movupd or Mnemonic.Movdqu:
                Set(table, code, &Moves.Move128, sub: 0);
                return;
            case Mnemonic.Movss:
                Set(table, code, &Moves.MoveScalar, sub: 4);
                return;
            case Mnemonic.Movsd:
                Set(table, code, &Moves.MoveScalar, sub: 8);
                return;
            case Mnemonic.Movd or Mnemonic.Movq:
            {
                var k0 = op.GetOpKind(0);
                var k1 = op.GetOpKind(1);
                if (k0 == OpCodeOperandKind.xmm_reg && k1 is OpCodeOperandKind.r32_or_mem or OpCodeOperandKind.r64_or_mem)
                    Set(table, code, &Moves.FromGpr, sub: (byte)(k1 == OpCodeOperandKind.r32_or_mem ? 4 : 8));
                else if (k1 == OpCodeOperandKind.xmm_reg && k0 is OpCodeOperandKind.r32_or_mem or OpCodeOperandKind.r64_or_mem)
                    Set(table, code, &Moves.ToGpr, sub: (byte)(k0 == OpCodeOperandKind.r32_or_mem ? 4 : 8));
                else
                    Set(table, code, &Moves.MoveQuad);
                return;
            }
            case Mnemonic.Movlps or Mnemonic.Movlpd:
                Set(table, code, &Moves.MoveHalf, sub: (byte)(op.GetOpKind(0) == OpCodeOperandKind.mem ? 1 : 0));
                return;
            case Mnemonic.Movhps or Mnemonic.Movhpd:
                Set(table, code, &Moves.MoveHalf, sub: (byte)(op.GetOpKind(0) == OpCodeOperandKind.mem ? 3 : 2));
                return;
            case Mnemonic.Movhlps:
                Set(table, code, &Moves.MoveHalf, sub: 4);
                return;
            case Mnemonic.Movlhps:
                Set(table, code, &Moves.MoveHalf, sub: 5);
                return;
            case Mnemonic.Pmovmskb:
                Set(table, code, &Moves.MoveMask, sub: 1);
                return;
            case Mnemonic.Movmskps:
                Set(table, code, &Moves.MoveMask, sub: 4);
                return;
            case Mnemonic.Movmskpd:
                Set(table, code, &Moves.MoveMask, sub: 8);
                return;
            case Mnemonic.Pshufd:
                Set(table, code, &Moves.ShuffleImmediate, sub: 0);
                return;
            case Mnemonic.Pshuflw:
                Set(table, code, &Moves.ShuffleImmediate, sub: 1);
                return;
            case Mnemonic.Pshufhw:
                Set(table, code, &Moves.ShuffleImmediate, sub: 2);
                return;
            case Mnemonic.Shufps:
                Set(table, code, &Moves.ShuffleFloat, sub: 4);
                return;
            case Mnemonic.Shufpd:
                Set(table, code, &Moves.ShuffleFloat, sub: 8);
                return;
            case Mnemonic.Ldmxcsr:
                Set(table, code, &Moves.Ldmxcsr);
                return;
            case Mnemonic.Stmxcsr:
                Set(table, code, &Moves.Stmxcsr);
                return;
        }

        // ---- packed integer and bitwise
        PackedOp? packed = m switch
        {
            Mnemonic.Paddb => PackedOp.Paddb, Mnemonic.Paddw => PackedOp.Paddw, Mnemonic.Paddd => PackedOp.Paddd,
            Mnemonic.Paddq => PackedOp.Paddq, Mnemonic.Paddsb => PackedOp.Paddsb, Mnemonic.Paddsw => PackedOp.Paddsw,
            Mnemonic.Paddusb => PackedOp.Paddusb, Mnemonic.Paddusw => PackedOp.Paddusw,
            Mnemonic.Psubb => PackedOp.Psubb, Mnemonic.Psubw => PackedOp.Psubw, Mnemonic.Psubd => PackedOp.Psubd,
            Mnemonic.Psubq => PackedOp.Psubq, Mnemonic.Psubsb => PackedOp.Psubsb, Mnemonic.Psubsw => PackedOp.Psubsw,
            Mnemonic.Psubusb => PackedOp.Psubusb, Mnemonic.Psubusw => PackedOp.Psubusw,
            Mnemonic.Pand or Mnemonic.Andps or Mnemonic.Andpd => PackedOp.Pand,
            Mnemonic.Pandn or Mnemonic.Andnps or Mnemonic.Andnpd => PackedOp.Pandn,
            Mnemonic.Por or Mnemonic.Orps or Mnemonic.Orpd => PackedOp.Por,
            Mnemonic.Pxor or Mnemonic.Xorps or Mnemonic.Xorpd => PackedOp.Pxor,
            Mnemonic.Pcmpeqb => PackedOp.Pcmpeqb, Mnemonic.Pcmpeqw => PackedOp.Pcmpeqw, Mnemonic.Pcmpeqd => PackedOp.Pcmpeqd,
            Mnemonic.Pcmpgtb => PackedOp.Pcmpgtb, Mnemonic.Pcmpgtw => PackedOp.Pcmpgtw, Mnemonic.Pcmpgtd => PackedOp.Pcmpgtd,
            Mnemonic.Pminub => PackedOp.Pminub, Mnemonic.Pmaxub => PackedOp.Pmaxub,
            Mnemonic.Pminsw => PackedOp.Pminsw, Mnemonic.Pmaxsw => PackedOp.Pmaxsw,
            Mnemonic.Pmullw => PackedOp.Pmullw, Mnemonic.Pmulhw => PackedOp.Pmulhw, Mnemonic.Pmulhuw => PackedOp.Pmulhuw,
            Mnemonic.Pmuludq => PackedOp.Pmuludq,
            Mnemonic.Punpcklbw => PackedOp.Punpcklbw, Mnemonic.Punpcklwd => PackedOp.Punpcklwd,
            Mnemonic.Punpckldq or Mnemonic.Unpcklps => PackedOp.Punpckldq,
            Mnemonic.Punpcklqdq or Mnemonic.Unpcklpd => PackedOp.Punpcklqdq,
            Mnemonic.Punpckhbw => PackedOp.Punpckhbw, Mnemonic.Punpckhwd => PackedOp.Punpckhwd,
            Mnemonic.Punpckhdq or Mnemonic.Unpckhps => PackedOp.Punpckhdq,
            Mnemonic.Punpckhqdq or Mnemonic.Unpckhpd => PackedOp.Punpckhqdq,
            Mnemonic.Packsswb => PackedOp.Packsswb, Mnemonic.Packssdw => PackedOp.Packssdw, Mnemonic.Packuswb => PackedOp.Packuswb,
            Mnemonic.Psllw => PackedOp.Psllw, Mnemonic.Pslld => PackedOp.Pslld, Mnemonic.Psllq => PackedOp.Psllq,
            Mnemonic.Psrlw => PackedOp.Psrlw, Mnemonic.Psrld => PackedOp.Psrld, Mnemonic.Psrlq => PackedOp.Psrlq,
            Mnemonic.Psraw => PackedOp.Psraw, Mnemonic.Psrad => PackedOp.Psrad,
            Mnemonic.Pavgb => PackedOp.Pavgb, Mnemonic.Pavgw => PackedOp.Pavgw, Mnemonic.Psadbw => PackedOp.Psadbw,
            Mnemonic.Pmaddwd => PackedOp.Pmaddwd,
            _ => null,
        };
        if (packed is PackedOp p)
        {
            if (op.OpCount == 2 && op.GetOpKind(1) == OpCodeOperandKind.imm8)
                Set(table, code, &PackedInteger.ShiftImmediate, sub: (byte)p);
            else if (op.OpCount == 2)
                Set(table, code, &PackedInteger.Binary, sub: (byte)p);
            return;
        }
        if (m == Mnemonic.Pslldq)
        {
            Set(table, code, &PackedInteger.ShiftImmediate, sub: 0x80);
            return;
        }
        if (m == Mnemonic.Psrldq)
        {
            Set(table, code, &PackedInteger.ShiftImmediate, sub: 0x81);
            return;
        }

        if (Sse4.Register(table, code, m, op))
            return;

        // ---- floating point: executed by host thunks (SSE3 and SSE4.1 forms only when the host has them: the
        // thunk runs the instruction itself)
        if (IsFloatMnemonic(m) || IsSse3Float(m) && Sse3.IsSupported || IsRound(m) && Sse41.IsSupported)
        {
            var form = new FloatForm
            {
                Destination = m is Mnemonic.Comiss or Mnemonic.Comisd or Mnemonic.Ucomiss or Mnemonic.Ucomisd
                    ? FloatOperand.Flags
                    : KindOf(op.GetOpKind(0)),
                Source = KindOf(op.GetOpKind(1)),
                MemorySize = (byte)op.MemorySize.GetSize(),
                Predicate = m is Mnemonic.Cmpss or Mnemonic.Cmpsd or Mnemonic.Cmpps or Mnemonic.Cmppd,
                Immediates = (byte)(IsRound(m) ? 16 : 0),
            };
            int index = FloatThunks.Add(code, form);
            Set(table, code, &FloatHandlers.Execute, sub: (byte)index);
        }
    }

    private static FloatOperand KindOf(OpCodeOperandKind kind) => kind switch
    {
        OpCodeOperandKind.r32_reg or OpCodeOperandKind.r32_or_mem => FloatOperand.Gpr32,
        OpCodeOperandKind.r64_reg or OpCodeOperandKind.r64_or_mem => FloatOperand.Gpr64,
        _ => FloatOperand.Xmm,
    };

    /// <summary>SSE3 floating point (SDM Vol. 2 ADDSUBPS ... HSUBPD).</summary>
    private static bool IsSse3Float(Mnemonic m) => m is Mnemonic.Addsubps or Mnemonic.Addsubpd or Mnemonic.Haddps
        or Mnemonic.Haddpd or Mnemonic.Hsubps or Mnemonic.Hsubpd;

    /// <summary>SSE4.1 ROUNDPS/PD/SS/SD: one thunk per imm8[3:0] (rounding mode, MXCSR.RC select, precision suppression).</summary>
    private static bool IsRound(Mnemonic m) => m is Mnemonic.Roundps or Mnemonic.Roundpd or Mnemonic.Roundss or Mnemonic.Roundsd;

    private static bool IsFloatMnemonic(Mnemonic m) => m is
        Mnemonic.Addss or Mnemonic.Addsd or Mnemonic.Addps or Mnemonic.Addpd or
        Mnemonic.Subss or Mnemonic.Subsd or Mnemonic.Subps or Mnemonic.Subpd or
        Mnemonic.Mulss or Mnemonic.Mulsd or Mnemonic.Mulps or Mnemonic.Mulpd or
        Mnemonic.Divss or Mnemonic.Divsd or Mnemonic.Divps or Mnemonic.Divpd or
        Mnemonic.Minss or Mnemonic.Minsd or Mnemonic.Minps or Mnemonic.Minpd or
        Mnemonic.Maxss or Mnemonic.Maxsd or Mnemonic.Maxps or Mnemonic.Maxpd or
        Mnemonic.Sqrtss or Mnemonic.Sqrtsd or Mnemonic.Sqrtps or Mnemonic.Sqrtpd or
        Mnemonic.Cmpss or Mnemonic.Cmpsd or Mnemonic.Cmpps or Mnemonic.Cmppd or
        Mnemonic.Comiss or Mnemonic.Comisd or Mnemonic.Ucomiss or Mnemonic.Ucomisd or
        Mnemonic.Cvtsi2ss or Mnemonic.Cvtsi2sd or Mnemonic.Cvtss2si or Mnemonic.Cvttss2si or
        Mnemonic.Cvtsd2si or Mnemonic.Cvttsd2si or Mnemonic.Cvtss2sd or Mnemonic.Cvtsd2ss or
        Mnemonic.Cvtdq2ps or Mnemonic.Cvtdq2pd or Mnemonic.Cvtps2dq or Mnemonic.Cvttps2dq or
        Mnemonic.Cvtpd2dq or Mnemonic.Cvttpd2dq or Mnemonic.Cvtps2pd or Mnemonic.Cvtpd2ps;
}
