using VmmKit.Vmx.Emulator.Engine;
using static VmmKit.Vmx.Emulator.Engine.ControlBits;

namespace VmmKit.Vmx.Emulator.Handlers;

/// <summary>
/// MOV to/from CR0, CR2, CR3, CR4, CR8, CLTS, LMSW, SMSW (SDM Vol. 2A "MOV—Move to/from Control Registers", "CLTS",
/// "LMSW", "SMSW") with the VMX non-root rules: CR0/CR4 guest/host masks and read shadows, CR3-load/store and
/// CR8-load/store exiting, CR3-target values (SDM Vol. 3C §26.1.3, §26.3). Exits report the control-register
/// access qualification of SDM Vol. 3C §27.2.1 table 27-3: CR number (3:0), access type (5:4: 0 MOV to CR,
/// 1 MOV from CR, 2 CLTS, 3 LMSW), LMSW operand type (6), GPR (11:8), LMSW source data (31:16).
/// </summary>
internal static unsafe class ControlRegisters
{
    private const int MovTo = 0, MovFrom = 1, CltsType = 2, LmswType = 3;

    private static ulong Qualification(int cr, int type, int gpr) => (ulong)(uint)(cr & 0xF) | ((ulong)(uint)type << 4) | ((ulong)(uint)(gpr & 0xF) << 8);

    private static bool ValidCr(int cr, Core c) => cr is 0 or 2 or 3 or 4 || (cr == 8 && c.Bitness == 64);

    /// <summary>MOV r32/r64, CRn.</summary>
    public static int MovFromCr(Core c, Instr* i)
    {
        int gpr = i->Op0, cr = i->Op1;
        if (!ValidCr(cr, c)) return c.RaiseUD();
        if (!c.IsCpl0) return c.RaiseGP0();
        ref CpuState s = ref c.S;
        ulong v;
        switch (cr)
        {
            case 0: v = c.GuestVisibleCr0; break;
            case 2: v = s.Cr2; break;
            case 3:
                if (c.Cr3StoreExiting) return c.RaiseExit(i, BasicExitReason.CrAccess, Qualification(3, MovFrom, gpr));
                v = s.Cr3;
                break;
            case 4: v = c.GuestVisibleCr4; break;
            default:
                if (c.Cr8StoreExiting) return c.RaiseExit(i, BasicExitReason.CrAccess, Qualification(8, MovFrom, gpr));
                v = s.Cr8;
                break;
        }
        c.SetReg(gpr, i->OpSize, v);
        return ExecStatus.Continue;
    }

    /// <summary>MOV CRn, r32/r64.</summary>
    public static int MovToCr(Core c, Instr* i)
    {
        int cr = i->Op0, gpr = i->Op1;
        if (!ValidCr(cr, c)) return c.RaiseUD();
        if (!c.IsCpl0) return c.RaiseGP0();
        ulong v = c.GetReg(gpr, i->Op1Size);
        ref CpuState s = ref c.S;
        switch (cr)
        {
            case 0:
                // SDM Vol. 3C §26.1.3: exits when a host-owned bit would differ from the read shadow.
                if (((v ^ c.Cr0ReadShadow) & c.Cr0GuestHostMask) != 0) return c.RaiseExit(i, BasicExitReason.CrAccess, Qualification(0, MovTo, gpr));
                return WriteCr0(c, v) ? ExecStatus.Continue : ExecStatus.Event;
            case 2:
                s.Cr2 = v;
                return ExecStatus.Continue;
            case 3:
                if (c.Cr3LoadExiting && !IsCr3Target(c, v)) return c.RaiseExit(i, BasicExitReason.CrAccess, Qualification(3, MovTo, gpr));
                return WriteCr3(c, v) ? ExecStatus.Continue : ExecStatus.Event;
            case 4:
                if (((v ^ c.Cr4ReadShadow) & c.Cr4GuestHostMask) != 0) return c.RaiseExit(i, BasicExitReason.CrAccess, Qualification(4, MovTo, gpr));
                return WriteCr4(c, v) ? ExecStatus.Continue : ExecStatus.Event;
            default:
                if (c.Cr8LoadExiting) return c.RaiseExit(i, BasicExitReason.CrAccess, Qualification(8, MovTo, gpr));
                if ((v & ~0xFUL) != 0) return c.RaiseGP0(); // SDM Vol. 3A §10.8.6.1: CR8 bits 63:4 reserved
                s.Cr8 = v;
                return ExecStatus.Continue;
        }
    }

    private static bool IsCr3Target(Core c, ulong v)
    {
        // SDM Vol. 3C §26.1.3: no exit when the value equals one of the first CR3-target-count target values.
        for (int k = 0; k < c.Cr3TargetCount && k < 4; k++)
        {
            if (c.Cr3Targets[k] == v) return true;
        }
        return false;
    }

    /// <summary>
    /// Loads CR0 (host-owned bits keep their value, SDM Vol. 3C §26.3) with the #GP checks of SDM Vol. 2A MOV CR and the
    /// IA-32e mode transitions of SDM Vol. 3A §10.8.5 (EFER.LME + CR0.PG sets EFER.LMA; clearing PG clears it).
    /// </summary>
    public static bool WriteCr0(Core c, ulong value)
    {
        ref CpuState s = ref c.S;
        if ((value >> 32) != 0) { c.RaiseGP0(); return false; }
        ulong old = s.Cr0;
        ulong v = (value & ~c.Cr0GuestHostMask) | (old & c.Cr0GuestHostMask);
        v = (v & Cr0Defined) | Cr0Et; // ET is fixed to 1 (SDM Vol. 3A §2.5)
        if ((v & Cr0Pg) != 0 && (v & Cr0Pe) == 0) { c.RaiseGP0(); return false; }
        if ((v & Cr0Nw) != 0 && (v & Cr0Cd) == 0) { c.RaiseGP0(); return false; }
        if ((v & c.Cr0Fixed1Bits) != c.Cr0Fixed1Bits) { c.RaiseGP0(); return false; } // SDM Vol. 3C §23.8: fixed bits in VMX operation
        ulong oldEfer = s.Efer, efer = oldEfer;
        bool pgOn = (old & Cr0Pg) == 0 && (v & Cr0Pg) != 0;
        bool pgOff = (old & Cr0Pg) != 0 && (v & Cr0Pg) == 0;
        if (pgOn && (efer & EferLme) != 0)
        {
            // Activating IA-32e mode needs PAE and a CS that is not 64-bit (SDM Vol. 3A §10.8.5).
            if ((s.Cr4 & Cr4Pae) == 0 || (s.Cs.AccessRights & (1u << 13)) != 0) { c.RaiseGP0(); return false; }
            efer |= EferLma;
        }
        if (pgOff)
        {
            // Paging cannot be turned off in 64-bit mode or with PCIDE set.
            if (c.Bitness == 64 || (s.Cr4 & Cr4Pcide) != 0) { c.RaiseGP0(); return false; }
            efer &= ~EferLma;
        }
        s.Cr0 = v;
        s.Efer = efer;
        // SDM Vol. 3A §4.10.4.1: changing PG or WP (and PE, which selects the mode) invalidates the TLBs.
        if (((old ^ v) & (Cr0Pe | Cr0Pg | Cr0Wp | Cr0Cd)) != 0 || efer != oldEfer) c.RefreshMode();
        return true;
    }

    /// <summary>Loads CR3 (SDM Vol. 3A §4.10.4.1: flushes the TLB; the software TLB has no PCID tags, so it flushes always).</summary>
    public static bool WriteCr3(Core c, ulong value)
    {
        ref CpuState s = ref c.S;
        if ((s.Efer & EferLma) != 0)
        {
            // Bit 63 is the PCID no-flush hint when CR4.PCIDE = 1 (SDM Vol. 3A §4.10.4.1); bits 62:52 are reserved.
            if ((s.Cr4 & Cr4Pcide) != 0) value &= ~(1UL << 63);
            if ((value >> 52) != 0) { c.RaiseGP0(); return false; }
        }
        else
        {
            value = (uint)value;
        }
        s.Cr3 = value;
        c.FlushTlb();
        return true;
    }

    /// <summary>Loads CR4 with the checks of SDM Vol. 2A MOV CR (reserved bits, PAE in IA-32e mode, PCIDE rules).</summary>
    public static bool WriteCr4(Core c, ulong value)
    {
        ref CpuState s = ref c.S;
        ulong old = s.Cr4;
        ulong v = (value & ~c.Cr4GuestHostMask) | (old & c.Cr4GuestHostMask);
        if ((v & ~Cr4Supported) != 0 || (v & c.Cr4Fixed1Bits) != c.Cr4Fixed1Bits) { c.RaiseGP0(); return false; }
        bool lma = (s.Efer & EferLma) != 0;
        if (lma && (v & Cr4Pae) == 0) { c.RaiseGP0(); return false; }
        if ((old & Cr4Pcide) == 0 && (v & Cr4Pcide) != 0 && (!lma || (s.Cr3 & 0xFFF) != 0)) { c.RaiseGP0(); return false; }
        s.Cr4 = v;
        if (((old ^ v) & Cr4PagingBits) != 0) c.FlushTlb();
        return true;
    }

    /// <summary>CLTS: clears CR0.TS (SDM Vol. 3C §26.1.3: exits when TS is set in both the mask and the read shadow).</summary>
    public static int Clts(Core c, Instr* i)
    {
        if (!c.IsCpl0) return c.RaiseGP0();
        if ((c.Cr0GuestHostMask & c.Cr0ReadShadow & Cr0Ts) != 0) return c.RaiseExit(i, BasicExitReason.CrAccess, Qualification(0, CltsType, 0));
        if ((c.Cr0GuestHostMask & Cr0Ts) == 0) c.S.Cr0 &= ~Cr0Ts; // a host-owned TS whose shadow is 0 stays as it is
        return ExecStatus.Continue;
    }

    /// <summary>LMSW r/m16: loads CR0 bits 3:0 (PE can be set, not cleared).</summary>
    public static int Lmsw(Core c, Instr* i)
    {
        ulong src;
        bool mem = i->Op0 == Instr.MemoryOperand;
        ulong lin = 0;
        if (mem)
        {
            lin = c.LinearAddress(i);
            if (!c.Read(lin, 2, out src)) return ExecStatus.Event;
        }
        else src = c.GetReg(i->Op0, 2);
        if (!c.IsCpl0) return c.RaiseGP0();
        ulong mask = c.Cr0GuestHostMask, shadow = c.Cr0ReadShadow;
        // SDM Vol. 3C §26.1.3: PE set in mask and source but clear in the shadow, or any of MP/EM/TS host-owned and different.
        bool exit = (mask & src & ~shadow & Cr0Pe) != 0 || (mask & (src ^ shadow) & (Cr0Mp | Cr0Em | Cr0Ts)) != 0;
        if (exit)
        {
            int r = c.RaiseExit(i, BasicExitReason.CrAccess, Qualification(0, LmswType, 0) | (mem ? 1UL << 6 : 0) | ((src & 0xFFFF) << 16));
            if (mem) c.Event.GuestLinear = lin;
            return r;
        }
        ref CpuState s = ref c.S;
        ulong low = ((src & 0xE) | ((src | s.Cr0) & Cr0Pe)) & ~mask & 0xF;
        ulong v = (s.Cr0 & ~(0xFUL & ~mask)) | low;
        ulong old = s.Cr0;
        s.Cr0 = v;
        if (((old ^ v) & Cr0Pe) != 0) c.RefreshMode();
        return ExecStatus.Continue;
    }

    /// <summary>SMSW r/m: the guest's view of CR0 (16 bits to memory, the operand size to a register).</summary>
    public static int Smsw(Core c, Instr* i)
    {
        // SDM Vol. 3A §2.5: CR4.UMIP makes SMSW #GP(0) at CPL > 0.
        if ((c.S.Cr4 & Cr4Umip) != 0 && !c.IsCpl0) return c.RaiseGP0();
        ulong v = c.GuestVisibleCr0;
        if (i->Op0 == Instr.MemoryOperand) return c.Write(c.LinearAddress(i), 2, v) ? ExecStatus.Continue : ExecStatus.Event;
        c.SetReg(i->Op0, i->OpSize, v);
        return ExecStatus.Continue;
    }
}
