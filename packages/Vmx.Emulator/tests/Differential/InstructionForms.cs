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

    private static readonly HashSet<OpCodeOperandKind> VexGprKinds =
        [.. SupportedKinds, OpCodeOperandKind.r32_vvvv, OpCodeOperandKind.r64_vvvv];

    private static readonly HashSet<OpCodeOperandKind> MmxKinds =
        [.. SupportedKinds, OpCodeOperandKind.mm_reg, OpCodeOperandKind.mm_rm, OpCodeOperandKind.mm_or_mem];

    /// <summary>Forms the SDM calls undefined or that cannot run natively in user mode.</summary>
    private static readonly HashSet<Code> Excluded =
    [
        Code.Bswap_r16, // "When the BSWAP instruction references a 16-bit register, the result is undefined."
        Code.Pextrw_r32m16_xmm_imm8, Code.Pextrw_r64m16_xmm_imm8, // SSE4.1 forms, outside the SSE2 subset
    ];

    public static readonly Code[] IntegerCodes = Select(Integer);
    public static readonly Code[] SseCodes = Select(Sse);

    /// <summary>
    /// Every x87 form that computes or stores (escape opcodes D8-DF) plus FNSTSW/FSTSW, FNSTCW/FSTCW, FNINIT, FNCLEX,
    /// FWAIT; the environment loads and stores come from <c>SequenceGenerator.X87Template</c> (they need prepared
    /// images), the Cyrix/IIT-only encodings are left out.
    /// </summary>
    public static readonly Code[] X87Codes = Enum.GetValues<Code>().Where(code =>
    {
        var op = code.ToOpCode();
        if (op.Encoding != EncodingKind.Legacy || !op.Mode64 || !op.IsInstruction)
            return false;
        if (code is Code.Wait or Code.Fnstsw_AX or Code.Fstsw_AX or Code.Fnstsw_m2byte or Code.Fstsw_m2byte
            or Code.Fnstcw_m2byte or Code.Fstcw_m2byte or Code.Fninit or Code.Finit or Code.Fnclex or Code.Fclex)
            return true;
        // Iced gives the register-only forms (D9 E8 FLD1, D8 C0+i FADD ...) as two-byte opcodes.
        uint escape = op.OpCodeLength == 2 ? op.OpCode >> 8 : op.OpCode;
        if (op.Table != OpCodeTableKind.Normal || escape is < 0xD8 or > 0xDF)
            return false;
        if (code is Code.Fldcw_m2byte or Code.Fldenv_m14byte or Code.Fldenv_m28byte or Code.Frstor_m94byte or Code.Frstor_m108byte
            or Code.Fnstenv_m14byte or Code.Fstenv_m14byte or Code.Fnstenv_m28byte or Code.Fstenv_m28byte
            or Code.Fnsave_m94byte or Code.Fsave_m94byte or Code.Fnsave_m108byte or Code.Fsave_m108byte
            or Code.Frstpm or Code.Fstdw_AX or Code.Fstsg_AX or Code.Fnstdw_AX or Code.Fnstsg_AX or Code.Ftstp
            or Code.Frint2 or Code.Frichop or Code.Frinear)
            return false;
        for (int i = 0; i < op.OpCount; i++)
        {
            if (op.GetOpKind(i) is not (OpCodeOperandKind.st0 or OpCodeOperandKind.sti_opcode or OpCodeOperandKind.mem))
                return false;
        }
        return true;
    }).ToArray();

    /// <summary>The general-register instructions of BMI1, BMI2, SSE4.2 (CRC32), POPCNT, LZCNT and MOVBE, each only when
    /// the host has it (<see cref="HostFeatures"/>).</summary>
    public static readonly Code[] BitCodes = SelectAnyEncoding(
        new (Mnemonic, string)[]
        {
            (Mnemonic.Andn, "bmi1"), (Mnemonic.Bextr, "bmi1"), (Mnemonic.Blsi, "bmi1"), (Mnemonic.Blsmsk, "bmi1"),
            (Mnemonic.Blsr, "bmi1"), (Mnemonic.Tzcnt, "bmi1"), (Mnemonic.Bzhi, "bmi2"), (Mnemonic.Mulx, "bmi2"),
            (Mnemonic.Pdep, "bmi2"), (Mnemonic.Pext, "bmi2"), (Mnemonic.Rorx, "bmi2"), (Mnemonic.Sarx, "bmi2"),
            (Mnemonic.Shlx, "bmi2"), (Mnemonic.Shrx, "bmi2"), (Mnemonic.Crc32, "sse4_2"), (Mnemonic.Popcnt, "popcnt"),
            (Mnemonic.Lzcnt, "abm"), (Mnemonic.Movbe, "movbe"),
        });

    private static Code[] SelectAnyEncoding((Mnemonic Mnemonic, string Feature)[] wanted)
    {
        var list = new List<Code>();
        var byMnemonic = wanted.Where(w => HostFeatures.Has(w.Feature)).Select(w => w.Mnemonic).ToHashSet();
        foreach (Code code in Enum.GetValues<Code>())
        {
            if (!byMnemonic.Contains(code.Mnemonic()))
                continue;
            var op = code.ToOpCode();
            if (op.Encoding is not (EncodingKind.Legacy or EncodingKind.VEX) || !op.Mode64 || !op.IsInstruction
                || code.CpuidFeatures().Contains(CpuidFeature.KNC))
                continue;
            bool ok = true;
            for (int i = 0; i < op.OpCount; i++)
                ok &= VexGprKinds.Contains(op.GetOpKind(i));
            if (ok)
                list.Add(code);
        }
        return list.ToArray();
    }

    /// <summary>SSE3, SSSE3, SSE4.1 and SSE4.2 mnemonics (XMM forms), each only when the host has its extension.</summary>
    public static readonly Code[] Sse4Codes = Select(new (Mnemonic, string)[]
    {
        (Mnemonic.Addsubps, "pni"), (Mnemonic.Addsubpd, "pni"), (Mnemonic.Haddps, "pni"), (Mnemonic.Haddpd, "pni"),
        (Mnemonic.Hsubps, "pni"), (Mnemonic.Hsubpd, "pni"), (Mnemonic.Movddup, "pni"), (Mnemonic.Movshdup, "pni"),
        (Mnemonic.Movsldup, "pni"), (Mnemonic.Lddqu, "pni"),
        (Mnemonic.Pshufb, "ssse3"), (Mnemonic.Phaddw, "ssse3"), (Mnemonic.Phaddd, "ssse3"), (Mnemonic.Phaddsw, "ssse3"),
        (Mnemonic.Phsubw, "ssse3"), (Mnemonic.Phsubd, "ssse3"), (Mnemonic.Phsubsw, "ssse3"), (Mnemonic.Pmaddubsw, "ssse3"),
        (Mnemonic.Pmulhrsw, "ssse3"), (Mnemonic.Psignb, "ssse3"), (Mnemonic.Psignw, "ssse3"), (Mnemonic.Psignd, "ssse3"),
        (Mnemonic.Pabsb, "ssse3"), (Mnemonic.Pabsw, "ssse3"), (Mnemonic.Pabsd, "ssse3"), (Mnemonic.Palignr, "ssse3"),
        (Mnemonic.Pblendvb, "sse4_1"), (Mnemonic.Blendvps, "sse4_1"), (Mnemonic.Blendvpd, "sse4_1"), (Mnemonic.Blendps, "sse4_1"),
        (Mnemonic.Blendpd, "sse4_1"), (Mnemonic.Pblendw, "sse4_1"), (Mnemonic.Pminsb, "sse4_1"), (Mnemonic.Pminsd, "sse4_1"),
        (Mnemonic.Pminuw, "sse4_1"), (Mnemonic.Pminud, "sse4_1"), (Mnemonic.Pmaxsb, "sse4_1"), (Mnemonic.Pmaxsd, "sse4_1"),
        (Mnemonic.Pmaxuw, "sse4_1"), (Mnemonic.Pmaxud, "sse4_1"), (Mnemonic.Pmulld, "sse4_1"), (Mnemonic.Pmuldq, "sse4_1"),
        (Mnemonic.Pcmpeqq, "sse4_1"), (Mnemonic.Packusdw, "sse4_1"), (Mnemonic.Phminposuw, "sse4_1"), (Mnemonic.Mpsadbw, "sse4_1"),
        (Mnemonic.Insertps, "sse4_1"), (Mnemonic.Extractps, "sse4_1"), (Mnemonic.Pextrb, "sse4_1"), (Mnemonic.Pextrw, "sse4_1"),
        (Mnemonic.Pextrd, "sse4_1"), (Mnemonic.Pextrq, "sse4_1"), (Mnemonic.Pinsrb, "sse4_1"), (Mnemonic.Pinsrd, "sse4_1"),
        (Mnemonic.Pinsrq, "sse4_1"), (Mnemonic.Ptest, "sse4_1"), (Mnemonic.Movntdqa, "sse4_1"),
        (Mnemonic.Pmovsxbw, "sse4_1"), (Mnemonic.Pmovsxbd, "sse4_1"), (Mnemonic.Pmovsxbq, "sse4_1"), (Mnemonic.Pmovsxwd, "sse4_1"),
        (Mnemonic.Pmovsxwq, "sse4_1"), (Mnemonic.Pmovsxdq, "sse4_1"), (Mnemonic.Pmovzxbw, "sse4_1"), (Mnemonic.Pmovzxbd, "sse4_1"),
        (Mnemonic.Pmovzxbq, "sse4_1"), (Mnemonic.Pmovzxwd, "sse4_1"), (Mnemonic.Pmovzxwq, "sse4_1"), (Mnemonic.Pmovzxdq, "sse4_1"),
        (Mnemonic.Roundps, "sse4_1"), (Mnemonic.Roundpd, "sse4_1"), (Mnemonic.Roundss, "sse4_1"), (Mnemonic.Roundsd, "sse4_1"),
        (Mnemonic.Dpps, "sse4_1"), (Mnemonic.Dppd, "sse4_1"),
        (Mnemonic.Pcmpgtq, "sse4_2"), (Mnemonic.Pcmpestri, "sse4_2"), (Mnemonic.Pcmpestrm, "sse4_2"), (Mnemonic.Pcmpistri, "sse4_2"),
        (Mnemonic.Pcmpistrm, "sse4_2"), (Mnemonic.Pcmpestri64, "sse4_2"), (Mnemonic.Pcmpestrm64, "sse4_2"),
    }.Where(w => HostFeatures.Has(w.Item2)).Select(w => w.Item1).ToArray());

    /// <summary>MMX mnemonics (their mm forms; SSE/SSSE3 mnemonics on MMX registers included).</summary>
    public static readonly Mnemonic[] Mmx =
    [
        Mnemonic.Movd, Mnemonic.Movq, Mnemonic.Movntq, Mnemonic.Movq2dq, Mnemonic.Movdq2q,
        Mnemonic.Paddb, Mnemonic.Paddw, Mnemonic.Paddd, Mnemonic.Paddq, Mnemonic.Paddsb, Mnemonic.Paddsw,
        Mnemonic.Paddusb, Mnemonic.Paddusw, Mnemonic.Psubb, Mnemonic.Psubw, Mnemonic.Psubd, Mnemonic.Psubq,
        Mnemonic.Psubsb, Mnemonic.Psubsw, Mnemonic.Psubusb, Mnemonic.Psubusw, Mnemonic.Pand, Mnemonic.Pandn,
        Mnemonic.Por, Mnemonic.Pxor, Mnemonic.Pcmpeqb, Mnemonic.Pcmpeqw, Mnemonic.Pcmpeqd, Mnemonic.Pcmpgtb,
        Mnemonic.Pcmpgtw, Mnemonic.Pcmpgtd, Mnemonic.Pmovmskb, Mnemonic.Pminub, Mnemonic.Pmaxub, Mnemonic.Pminsw,
        Mnemonic.Pmaxsw, Mnemonic.Psllw, Mnemonic.Pslld, Mnemonic.Psllq, Mnemonic.Psrlw, Mnemonic.Psrld, Mnemonic.Psrlq,
        Mnemonic.Psraw, Mnemonic.Psrad, Mnemonic.Punpcklbw, Mnemonic.Punpcklwd, Mnemonic.Punpckldq, Mnemonic.Punpckhbw,
        Mnemonic.Punpckhwd, Mnemonic.Punpckhdq, Mnemonic.Packsswb, Mnemonic.Packssdw, Mnemonic.Packuswb,
        Mnemonic.Pmullw, Mnemonic.Pmulhw, Mnemonic.Pmulhuw, Mnemonic.Pmuludq, Mnemonic.Pavgb, Mnemonic.Pavgw,
        Mnemonic.Psadbw, Mnemonic.Pmaddwd, Mnemonic.Pextrw, Mnemonic.Pinsrw, Mnemonic.Pshufw,
        Mnemonic.Pshufb, Mnemonic.Phaddw, Mnemonic.Phaddd, Mnemonic.Phaddsw, Mnemonic.Phsubw, Mnemonic.Phsubd,
        Mnemonic.Phsubsw, Mnemonic.Pmaddubsw, Mnemonic.Pmulhrsw, Mnemonic.Psignb, Mnemonic.Psignw, Mnemonic.Psignd,
        Mnemonic.Pabsb, Mnemonic.Pabsw, Mnemonic.Pabsd, Mnemonic.Palignr,
    ];

    /// <summary>The MMX-register forms of <see cref="Mmx"/>.</summary>
    public static readonly Code[] MmxCodes = Select(Mmx, MmxKinds).Where(code =>
    {
        var op = code.ToOpCode();
        for (int i = 0; i < op.OpCount; i++)
        {
            if (op.GetOpKind(i) is OpCodeOperandKind.mm_reg or OpCodeOperandKind.mm_rm or OpCodeOperandKind.mm_or_mem)
                return true;
        }
        return false;
    }).ToArray();

    private static Code[] Select(Mnemonic[] mnemonics, HashSet<OpCodeOperandKind>? kinds = null)
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
                ok &= (kinds ?? SupportedKinds).Contains(op.GetOpKind(i));
            if (ok)
                list.Add(code);
        }
        return list.ToArray();
    }
}
