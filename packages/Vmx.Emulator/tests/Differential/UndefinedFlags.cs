using Iced.Intel;
using static VmmKit.Vmx.Emulator.Tests.Differential.RflagsBits;

namespace VmmKit.Vmx.Emulator.Tests.Differential;

/// <summary>
/// The RFLAGS bits the SDM leaves undefined after an instruction: the only bits the differential
/// tester does not compare (and the generator refuses to let a later instruction read).
/// Citations are Intel SDM Vol. 2 (instruction reference), section "Flags Affected" of each entry.
/// </summary>
internal static class UndefinedFlags
{
    /// <summary>Undefined flags after <paramref name="instruction"/>. <paramref name="count"/> is the shift/rotate
    /// count as the instruction sees it (before masking), or -1 when the instruction has none.</summary>
    public static ulong For(in Instruction instruction, int count)
    {
        int bits = OperandBits(instruction);
        int masked = count < 0 ? 0 : count & (bits == 64 ? 0x3F : 0x1F);
        switch (instruction.Mnemonic)
        {
            // MUL, IMUL: "The SF, ZF, AF, and PF flags are undefined."
            case Mnemonic.Mul:
            case Mnemonic.Imul:
                return SF | ZF | AF | PF;
            // DIV, IDIV: "The CF, OF, SF, ZF, AF, and PF flags are undefined."
            case Mnemonic.Div:
            case Mnemonic.Idiv:
                return Arithmetic;
            // AND, OR, XOR, TEST: "The state of the AF flag is undefined."
            case Mnemonic.And:
            case Mnemonic.Or:
            case Mnemonic.Xor:
            case Mnemonic.Test:
                return AF;
            // BT, BTS, BTR, BTC: "The ZF flag is unaffected. The OF, SF, AF, and PF flags are undefined."
            case Mnemonic.Bt:
            case Mnemonic.Bts:
            case Mnemonic.Btr:
            case Mnemonic.Btc:
                return OF | SF | AF | PF;
            // BSF, BSR: "The CF, OF, SF, AF, and PF flags are undefined."
            case Mnemonic.Bsf:
            case Mnemonic.Bsr:
                return CF | OF | SF | AF | PF;
            // LZCNT, TZCNT: "The OF, SF, PF and AF flags are undefined."
            case Mnemonic.Lzcnt:
            case Mnemonic.Tzcnt:
                return OF | SF | PF | AF;
            // SAL/SAR/SHL/SHR: "If the count is 0, the flags are not affected. ... The OF flag is affected only
            // on 1-bit shifts. For left shifts, ... For shifts greater than 1 bit the OF flag is undefined.
            // ... For a non-zero count, the AF flag is undefined." and for SHL/SHR "CF ... is undefined for SHL
            // and SHR instructions where the count is greater than or equal to the size (in bits) of the
            // destination operand."
            case Mnemonic.Shl:
            case Mnemonic.Sal:
            case Mnemonic.Shr:
            case Mnemonic.Sar:
            {
                if (masked == 0)
                    return 0;
                ulong u = AF;
                if (masked > 1)
                    u |= OF;
                if (masked >= bits && instruction.Mnemonic != Mnemonic.Sar)
                    u |= CF;
                return u;
            }
            // RCL/RCR/ROL/ROR: "The OF flag is defined only for the 1-bit rotates; it is undefined in all
            // other cases (except RCL and RCR instructions only: a zero-bit rotate does nothing, that is
            // affects no flags)." ROL/ROR: "If the masked count is 0, the flags are not affected."
            case Mnemonic.Rol:
            case Mnemonic.Ror:
            case Mnemonic.Rcl:
            case Mnemonic.Rcr:
                return masked > 1 ? OF : 0;
            // SHLD/SHRD: "If the count is 1 or greater, the CF flag is filled with the last bit shifted out
            // ... For a 1-bit shift, the OF flag is set if a sign change occurred; otherwise, it is cleared.
            // For shifts greater than 1 bit, the OF flag is undefined. ... The AF flag is undefined. If the
            // count operand is 0, the flags are not affected. If the count is greater than the operand size,
            // the flags are undefined."
            case Mnemonic.Shld:
            case Mnemonic.Shrd:
            {
                if (masked == 0)
                    return 0;
                if (masked > bits)
                    return Arithmetic;
                return masked > 1 ? AF | OF : AF;
            }
            // ANDN, BLSI, BLSMSK, BLSR, BZHI: "The AF and PF flags are undefined."
            case Mnemonic.Andn:
            case Mnemonic.Blsi:
            case Mnemonic.Blsmsk:
            case Mnemonic.Blsr:
            case Mnemonic.Bzhi:
                return AF | PF;
            // BEXTR: "The AF, SF and PF flags are undefined."
            case Mnemonic.Bextr:
                return AF | SF | PF;
            // DAA, DAS: "The OF flag is undefined."
            case Mnemonic.Daa:
            case Mnemonic.Das:
                return OF;
            // AAA, AAS: "The OF, SF, ZF, and PF flags are undefined."
            case Mnemonic.Aaa:
            case Mnemonic.Aas:
                return OF | SF | ZF | PF;
            // AAM, AAD: "The OF, AF, and CF flags are undefined."
            case Mnemonic.Aam:
            case Mnemonic.Aad:
                return OF | AF | CF;
            default:
                return 0;
        }
    }

    /// <summary>True when the instruction leaves RFLAGS untouched for this count (shift/rotate by a masked
    /// count of zero), so the undefined-flags state carries over unchanged.</summary>
    public static bool LeavesFlagsUnchanged(in Instruction instruction, int count)
    {
        if (count < 0)
            return false;
        int bits = OperandBits(instruction);
        int masked = count & (bits == 64 ? 0x3F : 0x1F);
        return masked == 0 && instruction.Mnemonic is Mnemonic.Shl or Mnemonic.Sal or Mnemonic.Shr or Mnemonic.Sar
            or Mnemonic.Rol or Mnemonic.Ror or Mnemonic.Rcl or Mnemonic.Rcr or Mnemonic.Shld or Mnemonic.Shrd;
    }

    /// <summary>Width in bits of operand 0 (the destination) of an integer instruction.</summary>
    public static int OperandBits(in Instruction instruction)
    {
        if (instruction.OpCount == 0)
            return 64;
        if (instruction.Op0Kind == OpKind.Register)
            return instruction.Op0Register.GetSize() * 8;
        if (instruction.Op0Kind == OpKind.Memory)
            return instruction.MemorySize.GetSize() * 8;
        return 64;
    }

    /// <summary>Converts Iced's <see cref="RflagsBits"/> to architectural RFLAGS bits.</summary>
    public static ulong FromIced(Iced.Intel.RflagsBits f)
    {
        ulong r = 0;
        if ((f & Iced.Intel.RflagsBits.OF) != 0) r |= OF;
        if ((f & Iced.Intel.RflagsBits.SF) != 0) r |= SF;
        if ((f & Iced.Intel.RflagsBits.ZF) != 0) r |= ZF;
        if ((f & Iced.Intel.RflagsBits.AF) != 0) r |= AF;
        if ((f & Iced.Intel.RflagsBits.CF) != 0) r |= CF;
        if ((f & Iced.Intel.RflagsBits.PF) != 0) r |= PF;
        if ((f & Iced.Intel.RflagsBits.DF) != 0) r |= DF;
        return r;
    }
}
