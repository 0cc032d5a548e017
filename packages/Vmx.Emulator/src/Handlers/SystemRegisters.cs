using VmmKit.Vmx.Emulator.Engine;
using static VmmKit.Vmx.Emulator.Engine.ControlBits;

namespace VmmKit.Vmx.Emulator.Handlers;

/// <summary>
/// System instructions a kernel runs early: INVLPG, INVPCID, SWAPGS, RDTSCP, WBINVD/INVD, PAUSE, MOV to/from DR0-DR7,
/// LTR/STR, LLDT/SLDT (SDM Vol. 2 per instruction; VMX non-root exits per SDM Vol. 3C §26.1.2–§26.1.3).
/// </summary>
internal static unsafe class SystemRegisters
{
    private const int ES = 0, CS = 1;

    /// <summary>INVLPG m: drops the translations of the page (the software TLB is flushed whole: allowed, §4.10.4.1).</summary>
    public static int Invlpg(Core c, Instr* i)
    {
        if (!c.IsCpl0) return c.RaiseGP0();
        ulong lin = c.LinearAddress(i);
        // SDM Vol. 3C §27.2.1: the qualification of an INVLPG exit is the linear-address operand.
        if (c.InvlpgExiting) return c.RaiseExit(i, BasicExitReason.Invlpg, lin);
        c.FlushTlb();
        return ExecStatus.Continue;
    }

    /// <summary>INVPCID r, m128 (SDM Vol. 2A INVPCID): types 0 individual address, 1 single context, 2 all incl. global, 3 all non-global.</summary>
    public static int Invpcid(Core c, Instr* i)
    {
        if (!c.InvpcidEnabled || (c.S.Cr0 & 1) == 0) return c.RaiseUD();
        if (!c.IsCpl0) return c.RaiseGP0();
        // SDM Vol. 3C §26.1.3: INVPCID exits when both "INVLPG exiting" and "enable INVPCID" are 1.
        if (c.InvlpgExiting) return c.RaiseExit(i, BasicExitReason.Invpcid, 0);
        ulong type = c.GetReg(i->Op0, i->OpSize);
        ulong lin = c.LinearAddress(i);
        if (!c.Read128(lin, out ulong lo, out ulong address)) return ExecStatus.Event;
        if (type > 3 || (lo >> 12) != 0) return c.RaiseGP0();
        if (type == 0 && (ulong)(((long)address << 16) >> 16) != address) return c.RaiseGP0();
        if (type <= 1 && (c.S.Cr4 & Cr4Pcide) == 0 && (lo & 0xFFF) != 0) return c.RaiseGP0();
        c.FlushTlb();
        return ExecStatus.Continue;
    }

    /// <summary>SWAPGS: exchanges GS.base and IA32_KERNEL_GS_BASE (64-bit mode, CPL 0).</summary>
    public static int Swapgs(Core c, Instr* i)
    {
        if (c.Bitness != 64) return c.RaiseUD();
        if (!c.IsCpl0) return c.RaiseGP0();
        ref CpuState s = ref c.S;
        (s.Gs.Base, s.KernelGsBase) = (s.KernelGsBase, s.Gs.Base);
        c.RefreshMode();
        return ExecStatus.Continue;
    }

    /// <summary>
    /// RDFSBASE/RDGSBASE/WRFSBASE/WRGSBASE (sub 0-3; SDM Vol. 2C): 64-bit mode with CR4.FSGSBASE, else #UD; any CPL;
    /// a 32-bit operand reads the low half zero-extended and writes a zero-extended base; a non-canonical base is #GP(0).
    /// </summary>
    public static int FsGsBase(Core c, Instr* i)
    {
        if (c.Bitness != 64 || (c.S.Cr4 & Cr4Fsgsbase) == 0) return c.RaiseUD();
        ref CpuState s = ref c.S;
        ref ulong seg = ref ((i->Sub & 1) == 0 ? ref s.Fs.Base : ref s.Gs.Base);
        if (i->Sub < 2)
        {
            c.SetReg(i->Op0, i->OpSize, i->OpSize == 8 ? seg : (uint)seg);
            return ExecStatus.Continue;
        }
        ulong value = c.GetReg(i->Op0, i->OpSize);
        if ((ulong)(((long)value << 16) >> 16) != value) return c.RaiseGP0();
        seg = value;
        c.RefreshMode();
        return ExecStatus.Continue;
    }

    /// <summary>RDTSCP: EDX:EAX = TSC, ECX = IA32_TSC_AUX (#UD without "enable RDTSCP"; exits with "RDTSC exiting").</summary>
    public static int Rdtscp(Core c, Instr* i)
    {
        if (!c.RdtscpEnabled) return c.RaiseUD();
        if ((c.S.Cr4 & Cr4Tsd) != 0 && !c.IsCpl0) return c.RaiseGP0();
        if (c.RdtscExiting) return c.RaiseExit(i, BasicExitReason.Rdtscp, 0);
        ulong tsc = c.GuestTsc(i);
        c.SetReg(0, 4, (uint)tsc);
        c.SetReg(2, 4, tsc >> 32);
        c.SetReg(1, 4, (uint)c.S.TscAux);
        return ExecStatus.Continue;
    }

    /// <summary>WBINVD (Sub 0, exits with "WBINVD exiting") and INVD (Sub 1, always exits in VMX non-root operation).</summary>
    public static int CacheInvalidate(Core c, Instr* i)
    {
        if (!c.IsCpl0) return c.RaiseGP0();
        if (i->Sub == 1) return c.RaiseExit(i, BasicExitReason.Invd, 0);
        if (c.WbinvdExiting) return c.RaiseExit(i, BasicExitReason.Wbinvd, 0);
        return ExecStatus.Continue; // caches are coherent by construction
    }

    /// <summary>PAUSE: a hint; exits with "PAUSE exiting".</summary>
    public static int Pause(Core c, Instr* i) => c.PauseExiting ? c.RaiseExit(i, BasicExitReason.Pause, 0) : ExecStatus.Continue;

    /// <summary>
    /// MOV r, DRn (Sub 1) / MOV DRn, r (Sub 0). DR4/DR5 alias DR6/DR7 unless CR4.DE (then #UD). Exits with
    /// "MOV-DR exiting": qualification DR number (2:0), direction (4: 1 = from DR), GPR (11:8) (SDM Vol. 3C table 27-4).
    /// The breakpoints themselves are raised by the dispatch loop (Engine/Core.Debug.cs).
    /// </summary>
    public static int MovDr(Core c, Instr* i)
    {
        bool from = i->Sub == 1;
        int dr = from ? i->Op1 : i->Op0;
        int gpr = from ? i->Op0 : i->Op1;
        ref CpuState s = ref c.S;
        if (dr > 7) return c.RaiseUD();
        if (dr is 4 or 5)
        {
            if ((s.Cr4 & Cr4De) != 0) return c.RaiseUD();
            dr += 2;
        }
        if (!c.IsCpl0) return c.RaiseGP0();
        if (c.MovDrExiting)
        {
            int encoded = from ? i->Op1 : i->Op0;
            return c.RaiseExit(i, BasicExitReason.MovDr, (ulong)(uint)(encoded & 7) | (from ? 1UL << 4 : 0) | ((ulong)(uint)gpr << 8));
        }
        if (from)
        {
            ulong v = dr switch { 6 => s.Dr6, 7 => s.Dr7, _ => s.Dr[dr] };
            c.SetReg(gpr, i->OpSize, v);
            return ExecStatus.Continue;
        }
        ulong value = c.GetReg(gpr, i->Op1Size);
        switch (dr)
        {
            case 6:
                if ((value >> 32) != 0) return c.RaiseGP0();
                s.Dr6 = (value & 0xE00FUL) | 0xFFFF_0FF0UL; // SDM Vol. 3B §18.2.3: reserved bits read as 1 (bit 16 too: no RTM), 12 clear
                break;
            case 7:
                if ((value >> 32) != 0) return c.RaiseGP0();
                s.Dr7 = (value & 0xFFFF_2FFFUL & ~0x1800UL) | 0x400; // bits 15:14, 12:11 reserved 0, bit 10 reserved 1
                break;
            default:
                s.Dr[dr] = c.Bitness == 64 ? value : (uint)value;
                break;
        }
        c.RefreshBreakpoints();
        return ExecStatus.Continue;
    }

    /// <summary>LTR r/m16 (Sub 0) and LLDT r/m16 (Sub 1): protected mode, CPL 0, a GDT system descriptor (SDM Vol. 2A LTR, LLDT).</summary>
    public static int LoadSystemSegment(Core c, Instr* i)
    {
        ref CpuState s = ref c.S;
        if ((s.Cr0 & 1) == 0 || (s.Rflags & RflagsBits.VM) != 0) return c.RaiseUD();
        bool ldt = i->Sub == 1;
        ulong sel;
        if (i->Op0 != Instr.MemoryOperand) sel = c.GetReg(i->Op0, 2);
        else if (!c.Read(c.LinearAddress(i), 2, out sel)) return ExecStatus.Event;
        if (!c.IsCpl0) return c.RaiseGP0();
        ushort selector = (ushort)sel;
        uint selError = (uint)(selector & ~3);
        if ((selector & ~3) == 0)
        {
            if (!ldt) return c.RaiseGP0();
            s.Ldtr.Selector = selector;
            s.Ldtr.AccessRights = 1u << 16; // unusable
            return ExecStatus.Continue;
        }
        if ((selector & 4) != 0) return c.RaiseException(ExceptionVector.GP, selError);
        ulong index = (ulong)(selector & ~7);
        bool lm = (s.Efer & EferLma) != 0;
        if (index + (lm ? 15UL : 7UL) > s.GdtrLimit) return c.RaiseException(ExceptionVector.GP, selError);
        ulong addr = s.GdtrBase + index;
        c.Event = default;
        if (!c.ReadSystem(addr, out ulong d)) return ExecStatus.Event;
        ulong hi = 0;
        if (lm && !c.ReadSystem(addr + 8, out hi)) return ExecStatus.Event;
        uint type = (uint)(d >> 40) & 0x1F; // S bit (4) and type
        bool ok = ldt ? type == 0x02 : lm ? type == 0x09 : type is 0x09 or 0x01;
        if (!ok) return c.RaiseException(ExceptionVector.GP, selError);
        if (((d >> 47) & 1) == 0) return c.RaiseException(ExceptionVector.NP, selError);
        ulong upper = (hi & 0xFFFF_FFFF) << 32;
        if (lm && (ulong)(((long)upper << 16) >> 16) != upper) return c.RaiseException(ExceptionVector.GP, selError); // non-canonical base
        var seg = new SegmentRegister { Selector = selector };
        uint limit = (uint)((d & 0xFFFF) | ((d >> 32) & 0xF0000));
        if ((d & (1UL << 55)) != 0) limit = (limit << 12) | 0xFFF;
        seg.Limit = limit;
        seg.Base = ((d >> 16) & 0xFF_FFFF) | (((d >> 56) & 0xFF) << 24) | (lm ? (hi & 0xFFFF_FFFF) << 32 : 0);
        seg.AccessRights = (uint)((d >> 40) & 0xF0FF);
        if (ldt)
        {
            s.Ldtr = seg;
        }
        else
        {
            // LTR marks the descriptor busy in the GDT (type 9 -> 11, 1 -> 3).
            if (!c.Write(addr + 5, 1, ((d >> 40) & 0xFF) | 2)) return ExecStatus.Event;
            seg.AccessRights |= 2;
            s.Tr = seg;
        }
        return ExecStatus.Continue;
    }

    /// <summary>STR (Sub 0) / SLDT (Sub 1): the selector; a register destination is zero-extended to the operand size.</summary>
    public static int StoreSystemSegment(Core c, Instr* i)
    {
        ref CpuState s = ref c.S;
        if ((s.Cr0 & 1) == 0 || (s.Rflags & RflagsBits.VM) != 0) return c.RaiseUD();
        if ((s.Cr4 & Cr4Umip) != 0 && !c.IsCpl0) return c.RaiseGP0();
        ulong v = i->Sub == 1 ? s.Ldtr.Selector : s.Tr.Selector;
        if (i->Op0 == Instr.MemoryOperand) return c.Write(c.LinearAddress(i), 2, v) ? ExecStatus.Continue : ExecStatus.Event;
        c.SetReg(i->Op0, i->OpSize, v);
        return ExecStatus.Continue;
    }
}
