using Iced.Intel;

namespace VmmKit.Vmx.Emulator.Tests.Differential;

/// <summary>
/// The instruction forms (Iced <see cref="Code"/> values) the generator draws from, selected from
/// Iced's opcode tables by mnemonic: every legacy-encoded 64-bit-mode form of the general-purpose and
/// SSE/SSE2 mnemonics the issue lists, restricted to operand kinds the generator can fill safely.
/// </summary>
internal static class InstructionForms
{
    /// <summary>General-purpose mnemonics generated through their opcode tables' operand kinds.</summary>
    public static readonly Mnemonic[] Integer =
    [
        Mnemonic.Mov, Mnemonic.Movzx, Mnemonic.Movsx, Mnemonic.Movsxd, Mnemonic.Lea, Mnemonic.Xchg,
        Mnemonic.Cmpxchg, Mnemonic.Cmpxchg8b, Mnemonic.Cmpxchg16b, Mnemonic.Xadd, Mnemonic.Bswap, Mnemonic.Movbe,
        Mnemonic.Cbw, Mnemonic.Cwde, Mnemonic.Cdqe, Mnemonic.Cwd, Mnemonic.Cdq, Mnemonic.Cqo,
        Mnemonic.Add, Mnemonic.Adc, Mnemonic.Sub, Mnemonic.Sbb, Mnemonic.Cmp, Mnemonic.Inc, Mnemonic.Dec,
        Mnemonic.Neg, Mnemonic.And, Mnemonic.Or, Mnemonic.Xor, Mnemonic.Not, Mnemonic.Test,
        Mnemonic.Mul, Mnemonic.Imul,
        Mnemonic.Shl, Mnemonic.Sal, Mnemonic.Shr, Mnemonic.Sar, Mnemonic.Rol, Mnemonic.Ror, Mnemonic.Rcl, Mnemonic.Rcr,
        Mnemonic.Shld, Mnemonic.Shrd,
        Mnemonic.Bt, Mnemonic.Bts, Mnemonic.Btr, Mnemonic.Btc, Mnemonic.Bsf, Mnemonic.Bsr,
        Mnemonic.Tzcnt, Mnemonic.Lzcnt, Mnemonic.Popcnt,
        Mnemonic.Seto, Mnemonic.Setno, Mnemonic.Setb, Mnemonic.Setae, Mnemonic.Sete, Mnemonic.Setne, Mnemonic.Setbe,
        Mnemonic.Seta, Mnemonic.Sets, Mnemonic.Setns, Mnemonic.Setp, Mnemonic.Setnp, Mnemonic.Setl, Mnemonic.Setge,
        Mnemonic.Setle, Mnemonic.Setg,
        Mnemonic.Cmovo, Mnemonic.Cmovno, Mnemonic.Cmovb, Mnemonic.Cmovae, Mnemonic.Cmove, Mnemonic.Cmovne,
        Mnemonic.Cmovbe, Mnemonic.Cmova, Mnemonic.Cmovs, Mnemonic.Cmovns, Mnemonic.Cmovp, Mnemonic.Cmovnp,
        Mnemonic.Cmovl, Mnemonic.Cmovge, Mnemonic.Cmovle, Mnemonic.Cmovg,
        Mnemonic.Lahf, Mnemonic.Sahf, Mnemonic.Clc, Mnemonic.Stc, Mnemonic.Cmc, Mnemonic.Cld, Mnemonic.Std,
        Mnemonic.Pushf, Mnemonic.Pushfq, Mnemonic.Push, Mnemonic.Pop, Mnemonic.Nop,
    ];

    /// <summary>SSE/SSE2 mnemonics (legacy encodings with XMM operands only; MMX forms are excluded by operand kind).</summary>
    public static readonly Mnemonic[] Sse =
    [
        Mnemonic.Movd, Mnemonic.Movq, Mnemonic.Movaps, Mnemonic.Movups, Mnemonic.Movapd, Mnemonic.Movupd,
        Mnemonic.Movdqa, Mnemonic.Movdqu, Mnemonic.Movss, Mnemonic.Movsd, Mnemonic.Movlps, Mnemonic.Movhps,
        Mnemonic.Movlpd, Mnemonic.Movhpd, Mnemonic.Movhlps, Mnemonic.Movlhps,
        Mnemonic.Paddb, Mnemonic.Paddw, Mnemonic.Paddd, Mnemonic.Paddq, Mnemonic.Paddsb, Mnemonic.Paddsw,
        Mnemonic.Paddusb, Mnemonic.Paddusw, Mnemonic.Psubb, Mnemonic.Psubw, Mnemonic.Psubd, Mnemonic.Psubq,
        Mnemonic.Psubsb, Mnemonic.Psubsw, Mnemonic.Psubusb, Mnemonic.Psubusw,
        Mnemonic.Pand, Mnemonic.Pandn, Mnemonic.Por, Mnemonic.Pxor,
        Mnemonic.Pcmpeqb, Mnemonic.Pcmpeqw, Mnemonic.Pcmpeqd, Mnemonic.Pcmpgtb, Mnemonic.Pcmpgtw, Mnemonic.Pcmpgtd,
        Mnemonic.Pmovmskb, Mnemonic.Pminub, Mnemonic.Pmaxub, Mnemonic.Pminsw, Mnemonic.Pmaxsw,
        Mnemonic.Psllw, Mnemonic.Pslld, Mnemonic.Psllq, Mnemonic.Psrlw, Mnemonic.Psrld, Mnemonic.Psrlq,
        Mnemonic.Psraw, Mnemonic.Psrad, Mnemonic.Pslldq, Mnemonic.Psrldq,
        Mnemonic.Punpcklbw, Mnemonic.Punpcklwd, Mnemonic.Punpckldq, Mnemonic.Punpcklqdq,
        Mnemonic.Punpckhbw, Mnemonic.Punpckhwd, Mnemonic.Punpckhdq, Mnemonic.Punpckhqdq,
        Mnemonic.Packsswb, Mnemonic.Packssdw, Mnemonic.Packuswb,
        Mnemonic.Pshufd, Mnemonic.Pshuflw, Mnemonic.Pshufhw, Mnemonic.Pmullw, Mnemonic.Pmulhw, Mnemonic.Pmulhuw,
        Mnemonic.Pmuludq,
        Mnemonic.Addss, Mnemonic.Addsd, Mnemonic.Addps, Mnemonic.Addpd, Mnemonic.Subss, Mnemonic.Subsd,
        Mnemonic.Subps, Mnemonic.Subpd, Mnemonic.Mulss, Mnemonic.Mulsd, Mnemonic.Mulps, Mnemonic.Mulpd,
        Mnemonic.Divss, Mnemonic.Divsd, Mnemonic.Divps, Mnemonic.Divpd, Mnemonic.Minss, Mnemonic.Minsd,
        Mnemonic.Minps, Mnemonic.Minpd, Mnemonic.Maxss, Mnemonic.Maxsd, Mnemonic.Maxps, Mnemonic.Maxpd,
        Mnemonic.Sqrtss, Mnemonic.Sqrtsd, Mnemonic.Sqrtps, Mnemonic.Sqrtpd,
        Mnemonic.Andps, Mnemonic.Andpd, Mnemonic.Andnps, Mnemonic.Andnpd, Mnemonic.Orps, Mnemonic.Orpd,
        Mnemonic.Xorps, Mnemonic.Xorpd,
        Mnemonic.Cmpss, Mnemonic.Cmpsd, Mnemonic.Cmpps, Mnemonic.Cmppd, Mnemonic.Comiss, Mnemonic.Comisd,
        Mnemonic.Ucomiss, Mnemonic.Ucomisd,
        Mnemonic.Cvtsi2ss, Mnemonic.Cvtsi2sd, Mnemonic.Cvtss2si, Mnemonic.Cvttss2si, Mnemonic.Cvtsd2si,
        Mnemonic.Cvttsd2si, Mnemonic.Cvtss2sd, Mnemonic.Cvtsd2ss, Mnemonic.Cvtdq2ps, Mnemonic.Cvtdq2pd,
        Mnemonic.Cvtps2dq, Mnemonic.Cvttps2dq, Mnemonic.Cvtpd2dq, Mnemonic.Cvttpd2dq, Mnemonic.Cvtps2pd,
        Mnemonic.Cvtpd2ps,
        Mnemonic.Shufps, Mnemonic.Shufpd, Mnemonic.Unpcklps, Mnemonic.Unpckhps, Mnemonic.Unpcklpd, Mnemonic.Unpckhpd,
        Mnemonic.Movmskps, Mnemonic.Movmskpd, Mnemonic.Stmxcsr,
        Mnemonic.Pavgb, Mnemonic.Pavgw, Mnemonic.Psadbw, Mnemonic.Pmaddwd, Mnemonic.Pextrw, Mnemonic.Pinsrw,
        Mnemonic.Movntps, Mnemonic.Movntpd, Mnemonic.Movntdq,
    ];

    private static readonly HashSet<OpCodeOperandKind> SupportedKinds =
    [
        OpCodeOperandKind.r8_or_mem, OpCodeOperandKind.r16_or_mem, OpCodeOperandKind.r32_or_mem, OpCodeOperandKind.r64_or_mem,
        OpCodeOperandKind.r8_reg, OpCodeOperandKind.r16_reg, OpCodeOperandKind.r32_reg, OpCodeOperandKind.r64_reg,
        OpCodeOperandKind.r8_opcode, OpCodeOperandKind.r16_opcode, OpCodeOperandKind.r32_opcode, OpCodeOperandKind.r64_opcode,
        OpCodeOperandKind.r16_rm, OpCodeOperandKind.r32_rm, OpCodeOperandKind.r64_rm,
        OpCodeOperandKind.mem, OpCodeOperandKind.xmm_or_mem, OpCodeOperandKind.xmm_reg, OpCodeOperandKind.xmm_rm,
        OpCodeOperandKind.al, OpCodeOperandKind.cl, OpCodeOperandKind.ax, OpCodeOperandKind.eax, OpCodeOperandKind.rax,
        OpCodeOperandKind.imm8, OpCodeOperandKind.imm8_const_1, OpCodeOperandKind.imm8sex16, OpCodeOperandKind.imm8sex32,
        OpCodeOperandKind.imm8sex64, OpCodeOperandKind.imm16, OpCodeOperandKind.imm32, OpCodeOperandKind.imm32sex64,
        OpCodeOperandKind.imm64,
    ];

    /// <summary>Forms the SDM calls undefined or that cannot run natively in user mode.</summary>
    private static readonly HashSet<Code> Excluded =
    [
        Code.Bswap_r16, // "When the BSWAP instruction references a 16-bit register, the result is undefined."
        Code.Pextrw_r32m16_xmm_imm8, Code.Pextrw_r64m16_xmm_imm8, // SSE4.1 forms, outside the SSE2 subset
    ];

    public static readonly Code[] IntegerCodes = Select(Integer);
    public static readonly Code[] SseCodes = Select(Sse);

    private static Code[] Select(Mnemonic[] mnemonics)
    {
        var wanted = new HashSet<Mnemonic>(mnemonics);
        var list = new List<Code>();
        foreach (Code code in Enum.GetValues<Code>())
        {
            if (!wanted.Contains(code.Mnemonic()) || Excluded.Contains(code))
                continue;
            var op = code.ToOpCode();
            if (op.Encoding != EncodingKind.Legacy || !op.Mode64 || !op.IsInstruction || op.IsPrivileged)
                continue;
            bool ok = true;
            for (int i = 0; i < op.OpCount; i++)
                ok &= SupportedKinds.Contains(op.GetOpKind(i));
            if (ok)
                list.Add(code);
        }
        return list.ToArray();
    }
}
