using System.Numerics;
using Iced.Intel;
using VmmKit.Vmx.Emulator.Engine;
using RflagsBits = VmmKit.Vmx.Emulator.Engine.RflagsBits;

namespace VmmKit.Vmx.Emulator.Sse;

/// <summary>
/// BMI1 (ANDN, BEXTR, BLSI, BLSMSK, BLSR), BMI2 (BZHI, MULX, PDEP, PEXT, RORX, SARX, SHLX, SHRX) and SSE4.2's
/// CRC32 — the general-register instructions gcc emits for -march=x86-64-v2/v3 besides POPCNT, LZCNT/TZCNT and
/// MOVBE (Handlers/Bits.cs, Handlers/DataMovement.cs). SDM Vol. 2, each instruction's "Operation" and
/// "Flags Affected". The VEX forms raise #UD with VEX.L = 1 (Iced decodes none) and do not depend on CR4.OSXSAVE
/// (exception class 13, SDM Vol. 2 §2.8? table 2-?).
/// </summary>
internal static unsafe class BitManipulation
{
    private enum Op : byte { Andn, Bextr, Blsi, Blsmsk, Blsr, Bzhi, Mulx, Pdep, Pext, Rorx, Sarx, Shlx, Shrx }

    /// <summary>Registers the VEX forms and CRC32.</summary>
    public static void Register(HandlerEntry[] t)
    {
        (Code Code32, Code Code64, Op Op)[] forms =
        [
            (Code.VEX_Andn_r32_r32_rm32, Code.VEX_Andn_r64_r64_rm64, Op.Andn),
            (Code.VEX_Bextr_r32_rm32_r32, Code.VEX_Bextr_r64_rm64_r64, Op.Bextr),
            (Code.VEX_Blsi_r32_rm32, Code.VEX_Blsi_r64_rm64, Op.Blsi),
            (Code.VEX_Blsmsk_r32_rm32, Code.VEX_Blsmsk_r64_rm64, Op.Blsmsk),
            (Code.VEX_Blsr_r32_rm32, Code.VEX_Blsr_r64_rm64, Op.Blsr),
            (Code.VEX_Bzhi_r32_rm32_r32, Code.VEX_Bzhi_r64_rm64_r64, Op.Bzhi),
            (Code.VEX_Mulx_r32_r32_rm32, Code.VEX_Mulx_r64_r64_rm64, Op.Mulx),
            (Code.VEX_Pdep_r32_r32_rm32, Code.VEX_Pdep_r64_r64_rm64, Op.Pdep),
            (Code.VEX_Pext_r32_r32_rm32, Code.VEX_Pext_r64_r64_rm64, Op.Pext),
            (Code.VEX_Rorx_r32_rm32_imm8, Code.VEX_Rorx_r64_rm64_imm8, Op.Rorx),
            (Code.VEX_Sarx_r32_rm32_r32, Code.VEX_Sarx_r64_rm64_r64, Op.Sarx),
            (Code.VEX_Shlx_r32_rm32_r32, Code.VEX_Shlx_r64_rm64_r64, Op.Shlx),
            (Code.VEX_Shrx_r32_rm32_r32, Code.VEX_Shrx_r64_rm64_r64, Op.Shrx),
        ];
        foreach (var (c32, c64, op) in forms)
        {
            HandlerTable.Set(t, c32, &Execute, sub: (byte)op);
            HandlerTable.Set(t, c64, &Execute, sub: (byte)op);
        }
        HandlerTable.Set(t, Code.Crc32_r32_rm8, &Crc32);
        HandlerTable.Set(t, Code.Crc32_r64_rm8, &Crc32);
        HandlerTable.Set(t, Code.Crc32_r32_rm16, &Crc32);
        HandlerTable.Set(t, Code.Crc32_r32_rm32, &Crc32);
        HandlerTable.Set(t, Code.Crc32_r64_rm64, &Crc32);
    }

    /// <summary>Reads operand <paramref name="slot"/> (register or the memory operand) at <paramref name="size"/> bytes.</summary>
    private static bool Read(Core c, Instr* i, byte slot, int size, out ulong value)
    {
        if (slot == Instr.MemoryOperand)
            return c.Read(c.LinearAddress(i), size, out value);
        value = c.GetReg(slot, size);
        return true;
    }

    /// <summary>Every BMI1/BMI2 form (Sub = the operation).</summary>
    public static int Execute(Core c, Instr* i)
    {
        int size = i->OpSize;
        int bits = size * 8;
        ulong mask = bits == 64 ? ulong.MaxValue : (1UL << bits) - 1;
        Op op = (Op)i->Sub;
        ulong a, b = 0;
        // Operand order as encoded: Op1 is VEX.vvvv for ANDN/MULX/PDEP/PEXT and ModRM.rm for the others;
        // Op2 is ModRM.rm resp. VEX.vvvv.
        if (!Read(c, i, i->Op1, size, out a))
            return ExecStatus.Event;
        if (op is not (Op.Blsi or Op.Blsmsk or Op.Blsr or Op.Rorx) && !Read(c, i, i->Op2, size, out b))
            return ExecStatus.Event;
        ulong r;
        const ulong cf = RflagsBits.CF, zf = RflagsBits.ZF, sf = RflagsBits.SF;
        ulong sign = 1UL << (bits - 1);
        switch (op)
        {
            case Op.Andn:
                // ANDN: SF and ZF from the result, OF and CF cleared, AF and PF undefined (left clear).
                r = ~a & b & mask;
                Flags(c, (r == 0 ? zf : 0) | ((r & sign) != 0 ? sf : 0));
                break;
            case Op.Bextr:
            {
                // BEXTR: start = src2[7:0], length = src2[15:8]; ZF from the result, CF and OF cleared.
                int start = (int)(b & 0xFF), length = (int)((b >> 8) & 0xFF);
                ulong t = start >= bits ? 0 : a >> start;
                r = length >= bits ? t : t & ((1UL << length) - 1);
                Flags(c, r == 0 ? zf : 0);
                break;
            }
            case Op.Blsi:
                // BLSI: ZF and SF from the result, CF = (source != 0), OF cleared.
                r = (0 - a) & a & mask;
                Flags(c, (r == 0 ? zf : 0) | ((r & sign) != 0 ? sf : 0) | (a != 0 ? cf : 0));
                break;
            case Op.Blsmsk:
                // BLSMSK: SF from the result, ZF cleared, CF = (source == 0), OF cleared.
                r = ((a - 1) ^ a) & mask;
                Flags(c, ((r & sign) != 0 ? sf : 0) | (a == 0 ? cf : 0));
                break;
            case Op.Blsr:
                // BLSR: ZF and SF from the result, CF = (source == 0), OF cleared.
                r = (a - 1) & a & mask;
                Flags(c, (r == 0 ? zf : 0) | ((r & sign) != 0 ? sf : 0) | (a == 0 ? cf : 0));
                break;
            case Op.Bzhi:
            {
                // BZHI: n = src2[7:0]; CF = (n > OperandSize - 1); ZF, SF from the result; OF cleared.
                int n = (int)(b & 0xFF);
                r = n < bits ? a & ((1UL << n) - 1) : a;
                Flags(c, (r == 0 ? zf : 0) | ((r & sign) != 0 ? sf : 0) | (n > bits - 1 ? cf : 0));
                break;
            }
            case Op.Mulx:
            {
                // MULX: EDX/RDX * src; low half to the second operand (VEX.vvvv), high half to the first,
                // written last so it wins when both name the same register. Flags unaffected.
                ulong d = c.GetReg(2, size);
                ulong lo, hi;
                if (bits == 64)
                    hi = Math.BigMul(d, b, out lo);
                else
                {
                    ulong p = d * b;
                    lo = p & mask;
                    hi = p >> 32;
                }
                c.SetReg(i->Op1, size, lo);
                c.SetReg(i->Op0, size, hi);
                return ExecStatus.Continue;
            }
            case Op.Pdep:
                r = Deposit(a, b & mask) & mask; // source VEX.vvvv, mask r/m
                break;
            case Op.Pext:
                r = Extract(a, b & mask) & mask;
                break;
            case Op.Rorx:
            {
                int n = (int)(i->Imm & (ulong)(bits - 1));
                r = bits == 64 ? BitOperations.RotateRight(a, n) : BitOperations.RotateRight((uint)a, n);
                break;
            }
            case Op.Sarx:
            {
                int n = (int)(b & (ulong)(bits - 1));
                r = (bits == 64 ? (ulong)((long)a >> n) : (ulong)(uint)((int)a >> n)) & mask;
                break;
            }
            case Op.Shlx:
                r = (a << (int)(b & (ulong)(bits - 1))) & mask;
                break;
            default:
                r = (a & mask) >> (int)(b & (ulong)(bits - 1));
                break;
        }
        c.SetReg(i->Op0, size, r);
        return ExecStatus.Continue;
    }

    /// <summary>Sets CF, ZF, SF as given; OF, AF, PF cleared.</summary>
    private static void Flags(Core c, ulong values) => LazyFlags.SetEager(ref c.S, RflagsBits.Arith, values);

    /// <summary>PDEP: the low bits of <paramref name="source"/> placed at the set bits of <paramref name="mask"/>.</summary>
    private static ulong Deposit(ulong source, ulong mask)
    {
        ulong r = 0;
        for (ulong bit = 1; mask != 0; bit <<= 1)
        {
            ulong lowest = mask & (0 - mask);
            if ((source & bit) != 0)
                r |= lowest;
            mask &= mask - 1;
        }
        return r;
    }

    /// <summary>PEXT: the bits of <paramref name="source"/> at the set bits of <paramref name="mask"/>, packed low.</summary>
    private static ulong Extract(ulong source, ulong mask)
    {
        ulong r = 0;
        for (ulong bit = 1; mask != 0; bit <<= 1)
        {
            ulong lowest = mask & (0 - mask);
            if ((source & lowest) != 0)
                r |= bit;
            mask &= mask - 1;
        }
        return r;
    }

    /// <summary>
    /// CRC32 r32/r64, r/m8/16/32/64: CRC-32C (polynomial 11EDC6F41H) in the bit-reflected form the SDM's
    /// "Operation" computes; the 64-bit destination's upper half is cleared. Flags unaffected.
    /// </summary>
    public static int Crc32(Core c, Instr* i)
    {
        int size = i->Op1Size;
        if (!c.ReadOp1(i, out ulong data))
            return ExecStatus.Event;
        uint crc = (uint)c.GetReg(i->Op0, 4);
        for (int k = 0; k < size; k++)
        {
            crc ^= (uint)(data >> (8 * k)) & 0xFF;
            for (int bit = 0; bit < 8; bit++)
                crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
        }
        c.SetReg(i->Op0, i->OpSize, crc);
        return ExecStatus.Continue;
    }
}
