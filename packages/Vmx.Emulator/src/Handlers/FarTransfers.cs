using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Handlers;

/// <summary>
/// Far JMP / far CALL / far RET / IRET (SDM Vol. 2A "JMP—Jump", "CALL—Call Procedure", "IRET/IRETD/IRETQ—Interrupt
/// Return"; Vol. 2B "RET—Return From Procedure"; Vol. 3A §5.8 privilege checks for control transfers).
/// Real mode and protected/IA-32e mode transfers to a code segment of the SAME privilege level are implemented.
/// Not modelled yet (they raise a fault instead of transferring): call gates, task gates and TSS selectors
/// (#GP(selector)); far RET / IRET to an outer privilege level (#GP(selector)); IRET with NT = 1 (task return, #GP(0));
/// IRET to virtual-8086 mode (#GP(0)); LDT selectors (#GP(selector), the engine has no LDT).
/// <see cref="Instr.Sub"/> = operand size in bytes (2, 4, 8).
/// </summary>
internal static unsafe class FarTransfers
{
    private const int CS = 1, SS = 2;

    private static bool ProtectedMode(Core c) => (c.S.Cr0 & 1) != 0 && (c.S.Rflags & RflagsBits.VM) == 0;

    private static bool LongModeActive(Core c) => (c.S.Efer & (1UL << 10)) != 0;

    /// <summary>Reads the far pointer operand: ptr16:16/ptr16:32 immediates or m16:16/m16:32/m16:64.</summary>
    private static bool ReadFarPointer(Core c, Instr* i, out ushort selector, out ulong offset)
    {
        int size = i->Sub;
        selector = 0;
        offset = 0;
        if (i->Op0 != Instr.MemoryOperand)
        {
            selector = (ushort)i->Imm2;
            offset = i->Imm;
            return true;
        }
        ulong lin = c.LinearAddress(i);
        if (!c.Read(lin, size, out offset)) return false;
        if (!c.Read((lin + (ulong)size) & c.LinearMask, 2, out ulong sel)) return false;
        selector = (ushort)sel;
        return true;
    }

    /// <summary>Real-mode (and virtual-8086) CS load: base = selector × 16.</summary>
    private static void LoadRealModeCs(Core c, ushort selector)
    {
        ref CpuState s = ref c.S;
        s.Cs.Selector = selector;
        s.Cs.Base = (ulong)selector << 4;
        c.RefreshMode();
    }

    /// <summary>
    /// Checks a code-segment selector for a same-privilege far JMP/CALL (<paramref name="isReturn"/> false) or far
    /// RET/IRET (true) per SDM Vol. 3A §5.8.1–§5.8.2 and the instructions' pseudocode. On success
    /// <paramref name="d"/> holds the hidden part with the RPL set to the CPL. False with the fault raised.
    /// </summary>
    private static bool CheckCodeSegment(Core c, ushort selector, bool isReturn, out SegmentRegister d, bool allowOuter = false)
    {
        d = default;
        uint selError = (uint)(selector & ~3);
        if ((selector & ~3) == 0) { c.RaiseException(ExceptionVector.GP, 0); return false; } // null selector: #GP(0)
        c.Event = default; // a stale event from an earlier exit must not be mistaken for a fault of this read
        if (!c.ReadDescriptor(selector, out d))
        {
            if (c.Event.Kind != EventKind.None && c.Event.Kind != EventKind.Exception) return false; // EPT exit reading the GDT
            if (c.Event.Kind == EventKind.Exception && c.Event.Vector == ExceptionVector.PF) return false;
            c.RaiseException(ExceptionVector.GP, selError); // beyond the GDT limit, or an LDT selector (no LDT)
            return false;
        }
        int cpl = c.S.Cs.Selector & 3;
        int rpl = selector & 3;
        int dpl = (int)((d.AccessRights >> 5) & 3);
        bool isCode = (d.AccessRights & 0x18) == 0x18;
        if (!isCode)
        {
            // Call gates, task gates, TSS descriptors (system segments) and data segments: gates/task switches are
            // not modelled yet, data segments are never valid targets; both #GP(selector).
            c.RaiseException(ExceptionVector.GP, selError);
            return false;
        }
        bool conforming = (d.AccessRights & 4) != 0;
        if (isReturn)
        {
            // RET/IRET: RPL < CPL is #GP; RPL > CPL is a return to an outer level (not modelled: #GP(selector)).
            if ((allowOuter ? rpl < cpl : rpl != cpl) || (conforming ? dpl > rpl : dpl != rpl)) { c.RaiseException(ExceptionVector.GP, selError); return false; }
            cpl = rpl; // the new CPL
        }
        else
        {
            // JMP/CALL: conforming needs DPL <= CPL; non-conforming needs RPL <= CPL and DPL = CPL.
            if (conforming ? dpl > cpl : (rpl > cpl || dpl != cpl)) { c.RaiseException(ExceptionVector.GP, selError); return false; }
        }
        // IA-32e mode: a code segment with L = 1 and D = 1 is reserved (#GP(selector)).
        if (LongModeActive(c) && (d.AccessRights & (3u << 13)) == (3u << 13)) { c.RaiseException(ExceptionVector.GP, selError); return false; }
        if ((d.AccessRights & 0x80) == 0) { c.RaiseException(ExceptionVector.NP, selError); return false; }
        d.Selector = (ushort)((selector & ~3) | cpl);
        d.AccessRights |= 1; // accessed (not written back to the descriptor in memory)
        return true;
    }

    /// <summary>Target offset check for the new CS: within the limit (legacy/compatibility) or canonical (64-bit); #GP(0).</summary>
    private static bool TargetOk(Core c, in SegmentRegister cs, ref ulong offset, int opSize)
    {
        bool to64 = LongModeActive(c) && (cs.AccessRights & (1u << 13)) != 0;
        if (to64) return DescriptorTables.IsCanonical(offset);
        offset = opSize == 2 ? (ushort)offset : (uint)offset;
        return offset <= cs.Limit;
    }

    /// <summary>Far JMP ptr16:16/ptr16:32/m16:16/m16:32/m16:64.</summary>
    public static int JmpFar(Core c, Instr* i)
    {
        if (!ReadFarPointer(c, i, out ushort selector, out ulong offset)) return ExecStatus.Event;
        if (!ProtectedMode(c))
        {
            LoadRealModeCs(c, selector);
            c.S.Rip = i->Sub == 2 ? (ushort)offset : (uint)offset;
            return ExecStatus.Jump;
        }
        if (!CheckCodeSegment(c, selector, isReturn: false, out SegmentRegister d)) return ExecStatus.Event;
        if (!TargetOk(c, d, ref offset, i->Sub)) return c.RaiseGP0();
        c.S.Cs = d;
        c.S.Rip = offset;
        c.RefreshMode();
        return ExecStatus.Jump;
    }

    /// <summary>Far CALL: pushes CS (zero-extended to the operand size) and the return offset.</summary>
    public static int CallFar(Core c, Instr* i)
    {
        int size = i->Sub;
        if (!ReadFarPointer(c, i, out ushort selector, out ulong offset)) return ExecStatus.Event;
        SegmentRegister d = default;
        if (ProtectedMode(c))
        {
            if (!CheckCodeSegment(c, selector, isReturn: false, out d)) return ExecStatus.Event;
            if (!TargetOk(c, d, ref offset, size)) return c.RaiseGP0();
        }
        else offset = size == 2 ? (ushort)offset : (uint)offset;
        ulong oldRsp = c.S.Gpr[4];
        if (!c.Push(c.S.Cs.Selector, size) || !c.Push(i->NextIp, size))
        {
            c.S.Gpr[4] = oldRsp;
            return ExecStatus.Event;
        }
        if (ProtectedMode(c)) c.S.Cs = d;
        else
        {
            c.S.Cs.Selector = selector;
            c.S.Cs.Base = (ulong)selector << 4;
        }
        c.S.Rip = offset;
        c.RefreshMode();
        return ExecStatus.Jump;
    }

    /// <summary>Far RET / RET imm16 (same privilege level only).</summary>
    public static int RetFar(Core c, Instr* i)
    {
        int size = i->Sub;
        if (!c.Read(c.Linear(SS, c.StackOffset(0)), size, out ulong offset)) return ExecStatus.Event;
        if (!c.Read(c.Linear(SS, c.StackOffset(size)), 2, out ulong sel)) return ExecStatus.Event;
        ushort selector = (ushort)sel;
        ulong newRsp = c.StackOffset(2L * size + (long)(ushort)i->Imm);
        if (!ProtectedMode(c))
        {
            LoadRealModeCs(c, selector);
            c.S.Rip = size == 2 ? (ushort)offset : (uint)offset;
            c.SetStackPointer(newRsp);
            return ExecStatus.Jump;
        }
        if (!CheckCodeSegment(c, selector, isReturn: true, out SegmentRegister d)) return ExecStatus.Event;
        if (!TargetOk(c, d, ref offset, size)) return c.RaiseGP0();
        c.S.Cs = d;
        c.S.Rip = offset;
        c.SetStackPointer(newRsp); // stack size unchanged: SS is not reloaded on a same-level return
        c.RefreshMode();
        return ExecStatus.Jump;
    }

    /// <summary>IRET / IRETD / IRETQ: real mode, and protected / IA-32e mode returns to the same privilege level.</summary>
    public static int Iret(Core c, Instr* i)
    {
        int size = i->Sub;
        ref CpuState s = ref c.S;
        if ((s.Rflags & RflagsBits.VM) != 0) return c.RaiseGP0(); // virtual-8086 IRET (IOPL-sensitive): not modelled
        if (!c.Read(c.Linear(SS, c.StackOffset(0)), size, out ulong offset)) return ExecStatus.Event;
        if (!c.Read(c.Linear(SS, c.StackOffset(size)), 2, out ulong sel)) return ExecStatus.Event;
        if (!c.Read(c.Linear(SS, c.StackOffset(2L * size)), size, out ulong tempFlags)) return ExecStatus.Event;
        ushort selector = (ushort)sel;
        ulong old = s.GetRflags();
        if ((s.Cr0 & 1) == 0)
        {
            // Real-address mode (SDM IRET, REAL-ADDRESS-MODE): the offset must be within CS's 64 KiB limit.
            if (size == 4 && offset > 0xFFFF) return c.RaiseGP0();
            ulong nf = size == 4
                ? (tempFlags & 0x257FD5) | (old & 0x1A0000) // VM, VIF, VIP unchanged
                : (old & ~0xFFFFUL) | (tempFlags & 0xFFFF);
            c.SetStackPointer(c.StackOffset(3L * size));
            LoadRealModeCs(c, selector);
            s.Rip = (ushort)offset;
            s.SetRflags((nf | RflagsBits.Reserved1) & ~0x8028UL);
            return ExecStatus.Jump;
        }
        // Protected mode: NT = 1 is a task return (not modelled; in IA-32e mode the SDM makes it #GP(0) anyway).
        if ((old & RflagsBits.NT) != 0) return c.RaiseGP0();
        int cpl = c.Cpl;
        // Return to virtual-8086 mode (legacy protected mode, CPL 0, VM set in the image): not modelled.
        if (!LongModeActive(c) && size == 4 && cpl == 0 && (tempFlags & RflagsBits.VM) != 0) return c.RaiseGP0();
        // 64-bit mode always pops SS:RSP; otherwise SS:ESP is popped on a return to an outer privilege level.
        bool outer = (selector & 3) > cpl;
        bool popStack = c.Bitness == 64 || outer;
        ulong newRsp = 0, newSs = 0;
        if (popStack)
        {
            if (!c.Read(c.Linear(SS, c.StackOffset(3L * size)), size, out newRsp)) return ExecStatus.Event;
            if (!c.Read(c.Linear(SS, c.StackOffset(4L * size)), 2, out newSs)) return ExecStatus.Event;
        }
        if (!CheckCodeSegment(c, selector, isReturn: true, out SegmentRegister d, allowOuter: true)) return ExecStatus.Event;
        if (!TargetOk(c, d, ref offset, size)) return c.RaiseGP0();
        int newCpl = selector & 3;
        SegmentRegister loadedSs = s.Ss;
        if (popStack && !LoadStackSegment(c, (ushort)newSs, newCpl, out loadedSs)) return ExecStatus.Event;
        // SDM IRET RETURN-TO-SAME-PRIVILEGE-LEVEL: arithmetic flags, TF, DF, NT always; RF, AC, ID, VIF, VIP with
        // 32/64-bit operand size; IF if CPL <= IOPL; IOPL if CPL = 0. VM stays (it is 0 here).
        ulong mask = RflagsBits.Arith | RflagsBits.TF | RflagsBits.DF | RflagsBits.NT;
        if (size != 2) mask |= RflagsBits.RF | RflagsBits.AC | RflagsBits.ID | RflagsBits.VIF | RflagsBits.VIP;
        if ((ulong)cpl <= ((old >> 12) & 3)) mask |= RflagsBits.IF;
        if (cpl == 0) mask |= RflagsBits.IOPL;
        ulong flags = (old & ~mask) | (tempFlags & mask);
        s.Cs = d;
        s.Rip = offset;
        if (popStack)
        {
            s.Ss = loadedSs;
            s.Gpr[4] = size == 4 ? (uint)newRsp : size == 2 ? (ushort)newRsp : newRsp;
        }
        else c.SetStackPointer(c.StackOffset(3L * size));
        s.SetRflags(flags | RflagsBits.Reserved1);
        c.NmiBlocked = false; // IRET ends blocking by NMI (SDM Vol. 3A §6.7.1)
        if (outer) NullInaccessibleSegments(c, newCpl);
        c.RefreshMode();
        return ExecStatus.Jump;
    }

    /// <summary>
    /// The SS load of IRET (and far RET) to privilege level <paramref name="newCpl"/>: a writable data segment with
    /// RPL = DPL = new CPL, or a null selector in 64-bit mode when the new CPL is not 3 (SDM IRET pseudocode). #GP(selector).
    /// </summary>
    private static bool LoadStackSegment(Core c, ushort selector, int newCpl, out SegmentRegister ss)
    {
        ss = default;
        uint selError = (uint)(selector & ~3);
        if ((selector & ~3) == 0)
        {
            if (c.Bitness != 64 || newCpl == 3 || (selector & 3) != newCpl) { c.RaiseException(ExceptionVector.GP, 0); return false; }
            ss.Selector = selector;
            ss.AccessRights = (1u << 16) | 0x13 | ((uint)newCpl << 5);
            return true;
        }
        c.Event = default;
        if (!c.ReadDescriptor(selector, out ss))
        {
            if (c.Event.Kind != EventKind.None) return false;
            c.RaiseException(ExceptionVector.GP, selError);
            return false;
        }
        int dpl = (int)((ss.AccessRights >> 5) & 3);
        if ((selector & 3) != newCpl || dpl != newCpl || (ss.AccessRights & 0x1A) != 0x12) { c.RaiseException(ExceptionVector.GP, selError); return false; }
        if ((ss.AccessRights & 0x80) == 0) { c.RaiseException(ExceptionVector.SS, selError); return false; }
        ss.AccessRights |= 1;
        return true;
    }

    /// <summary>After a return to an outer level, ES/DS/FS/GS holding data or non-conforming code with DPL &lt; CPL become null (SDM IRET, RET).</summary>
    private static void NullInaccessibleSegments(Core c, int cpl)
    {
        ref CpuState s = ref c.S;
        foreach (int seg in (ReadOnlySpan<int>)[0, 3, 4, 5])
        {
            ref SegmentRegister r = ref s.Segment(seg);
            if ((r.AccessRights & (1u << 16)) != 0) continue;
            bool conformingCode = (r.AccessRights & 0x1C) == 0x1C;
            int dpl = (int)((r.AccessRights >> 5) & 3);
            if (!conformingCode && dpl < cpl)
            {
                r.Selector = 0;
                r.AccessRights = 1u << 16;
                // FS/GS keep their base in 64-bit mode only when loaded via MSRs; a null load clears it elsewhere.
                if (c.Bitness != 64) r.Base = 0;
            }
        }
    }
}
