using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Handlers;

/// <summary>Flag control (SDM Vol. 1 §7.3.13): CLC/STC/CMC/CLD/STD/CLI/STI, LAHF/SAHF.</summary>
internal static unsafe class FlagOps
{
    /// <summary>Operation in <see cref="Instr.Sub"/>.</summary>
    public const byte Clc = 0, Stc = 1, Cmc = 2, Cld = 3, Std = 4, Cli = 5, Sti = 6, Clac = 7, Stac = 8;

    /// <summary>CLC/STC/CMC/CLD/STD/CLI/STI.</summary>
    public static int FlagOp(Core c, Instr* i)
    {
        ref CpuState s = ref c.S;
        switch (i->Sub)
        {
            case Clc: LazyFlags.SetEager(ref s, RflagsBits.CF, 0); break;
            case Stc: LazyFlags.SetEager(ref s, RflagsBits.CF, RflagsBits.CF); break;
            case Cmc: LazyFlags.SetEager(ref s, RflagsBits.CF, LazyFlags.Carry(ref s) ? 0 : RflagsBits.CF); break;
            case Cld: s.Rflags &= ~RflagsBits.DF; break;
            case Std: s.Rflags |= RflagsBits.DF; break;
            case Cli:
            case Sti:
                // SDM CLI/STI: allowed when CPL <= IOPL (protected mode), else #GP(0).
                if ((c.S.Cr0 & 1) != 0 && (ulong)(s.Cs.Selector & 3) > ((s.Rflags >> 12) & 3)) return c.RaiseGP0();
                if (i->Sub == Sti && (s.Rflags & RflagsBits.IF) == 0) c.SetShadow(i, 1); // STI blocks interrupts for one instruction
                if (i->Sub == Cli) s.Rflags &= ~RflagsBits.IF; else s.Rflags |= RflagsBits.IF;
                break;
            case Clac:
            case Stac:
                // SDM CLAC/STAC: #UD at CPL > 0; AC decides SMAP for explicit supervisor accesses, so cached
                // translations of user pages must go.
                if (!c.IsCpl0) return c.RaiseUD();
                if (i->Sub == Clac) s.Rflags &= ~RflagsBits.AC; else s.Rflags |= RflagsBits.AC;
                if ((s.Cr4 & ControlBits.Cr4Smap) != 0) c.FlushTlb();
                break;
        }
        return ExecStatus.Continue;
    }

    /// <summary>LAHF: AH = SF:ZF:0:AF:0:PF:1:CF.</summary>
    public static int Lahf(Core c, Instr* i)
    {
        ulong f = c.S.GetRflags();
        c.SetReg(Instr.Gpr8High, 1, (f & 0xD5) | 2);
        return ExecStatus.Continue;
    }

    /// <summary>SAHF: SF ZF AF PF CF from AH.</summary>
    public static int Sahf(Core c, Instr* i)
    {
        ulong ah = c.GetReg(Instr.Gpr8High, 1);
        LazyFlags.SetEager(ref c.S, RflagsBits.SF | RflagsBits.ZF | RflagsBits.AF | RflagsBits.PF | RflagsBits.CF, ah);
        return ExecStatus.Continue;
    }
}
