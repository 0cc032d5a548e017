using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Handlers;

/// <summary>Decimal arithmetic, valid outside 64-bit mode only (SDM Vol. 2 DAA, DAS, AAA, AAS, AAM, AAD), plus BOUND, XLAT, SALC.</summary>
internal static unsafe class Bcd
{
    private static bool Cf(ref CpuState s) => LazyFlags.Carry(ref s);

    private static bool Af(ref CpuState s) => (s.GetRflags() & RflagsBits.AF) != 0;

    /// <summary>DAA.</summary>
    public static int Daa(Core c, Instr* i)
    {
        ref CpuState s = ref c.S;
        ulong al = c.GetReg(0, 1), oldAl = al;
        bool oldCf = Cf(ref s), af = Af(ref s), cf = false;
        if ((al & 0xF) > 9 || af) { al += 6; cf = oldCf || al > 0xFF; af = true; }
        else af = false;
        if (oldAl > 0x99 || oldCf) { al += 0x60; cf = true; }
        else cf = false;
        al &= 0xFF;
        c.SetReg(0, 1, al);
        ulong f = LazyFlags.ZsP(al, 1) | (cf ? RflagsBits.CF : 0) | (af ? RflagsBits.AF : 0);
        LazyFlags.SetEager(ref s, RflagsBits.Arith, f);
        return ExecStatus.Continue;
    }

    /// <summary>DAS.</summary>
    public static int Das(Core c, Instr* i)
    {
        ref CpuState s = ref c.S;
        ulong al = c.GetReg(0, 1), oldAl = al;
        bool oldCf = Cf(ref s), af = Af(ref s), cf = false;
        if ((al & 0xF) > 9 || af) { cf = oldCf || al < 6; al -= 6; af = true; }
        else af = false;
        if (oldAl > 0x99 || oldCf) { al -= 0x60; cf = true; }
        al &= 0xFF;
        c.SetReg(0, 1, al);
        ulong f = LazyFlags.ZsP(al, 1) | (cf ? RflagsBits.CF : 0) | (af ? RflagsBits.AF : 0);
        LazyFlags.SetEager(ref s, RflagsBits.Arith, f);
        return ExecStatus.Continue;
    }

    /// <summary>AAA (Sub = 0) / AAS (Sub = 1).</summary>
    public static int AaaAas(Core c, Instr* i)
    {
        ref CpuState s = ref c.S;
        ulong ax = c.GetReg(0, 2);
        bool adjust = (ax & 0xF) > 9 || Af(ref s);
        if (adjust)
        {
            if (i->Sub == 0) ax = ax + 0x106;
            else ax = (ax - 6 - 0x100) & 0xFFFF; // SDM AAS: AX = AX - 6; AH = AH - 1
        }
        ax = (ax & 0xFF0F);
        c.SetReg(0, 2, ax);
        ulong f = adjust ? RflagsBits.AF | RflagsBits.CF : 0;
        f |= LazyFlags.ZsP(ax & 0xFF, 1);
        LazyFlags.SetEager(ref s, RflagsBits.Arith, f);
        return ExecStatus.Continue;
    }

    /// <summary>AAM imm8: #DE when imm8 = 0.</summary>
    public static int Aam(Core c, Instr* i)
    {
        ulong b = i->Imm & 0xFF;
        if (b == 0) return c.RaiseException(ExceptionVector.DE);
        ulong al = c.GetReg(0, 1);
        ulong ax = ((al / b) << 8) | (al % b);
        c.SetReg(0, 2, ax);
        LazyFlags.SetEager(ref c.S, RflagsBits.Arith, LazyFlags.ZsP(ax & 0xFF, 1));
        return ExecStatus.Continue;
    }

    /// <summary>AAD imm8.</summary>
    public static int Aad(Core c, Instr* i)
    {
        ulong ax = c.GetReg(0, 2);
        ulong al = ((ax & 0xFF) + ((ax >> 8) * (i->Imm & 0xFF))) & 0xFF;
        c.SetReg(0, 2, al);
        LazyFlags.SetEager(ref c.S, RflagsBits.Arith, LazyFlags.ZsP(al, 1));
        return ExecStatus.Continue;
    }

    /// <summary>BOUND r, m: #BR when the signed index is outside [lower, upper].</summary>
    public static int Bound(Core c, Instr* i)
    {
        int size = i->OpSize;
        ulong lin = c.LinearAddress(i);
        if (!c.Read(lin, size, out ulong lo) || !c.Read((lin + (ulong)size) & c.LinearMask, size, out ulong hi)) return ExecStatus.Event;
        long idx = Arithmetic.SignExtend(c.GetReg(i->Op0, size), size);
        if (idx < Arithmetic.SignExtend(lo, size) || idx > Arithmetic.SignExtend(hi, size)) return c.RaiseException(ExceptionVector.BR);
        return ExecStatus.Continue;
    }

    /// <summary>XLAT: AL = [seg:rBX + AL].</summary>
    public static int Xlat(Core c, Instr* i)
    {
        ulong off = (c.S.Gpr[3] + (c.S.Gpr[0] & 0xFF)) & Arithmetic.SizeMask(i->AddrSize);
        if (!c.Read(c.Linear(i->MemSeg, off), 1, out ulong v)) return ExecStatus.Event;
        c.SetReg(0, 1, v);
        return ExecStatus.Continue;
    }

    /// <summary>SALC (undocumented D6): AL = CF ? FF : 00.</summary>
    public static int Salc(Core c, Instr* i)
    {
        c.SetReg(0, 1, LazyFlags.Carry(ref c.S) ? 0xFFUL : 0);
        return ExecStatus.Continue;
    }
}
