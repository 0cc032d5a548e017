namespace VmmKit.Vmx.Emulator.Engine;

/// <summary>Exception delivery through the guest's IVT/IDT (SDM Vol. 3A §6.12, §6.14; §20.1.4 real mode).</summary>
internal sealed unsafe partial class Core
{
    /// <summary>SDM Vol. 3A table 6-4: contributory exceptions.</summary>
    private static bool IsContributory(int v) => v is ExceptionVector.DE or ExceptionVector.TS or ExceptionVector.NP
        or ExceptionVector.SS or ExceptionVector.GP;

    /// <summary>Whether the vector pushes an error code (SDM table 6-1).</summary>
    public static bool HasErrorCode(int v) => v is ExceptionVector.DF or ExceptionVector.TS or ExceptionVector.NP
        or ExceptionVector.SS or ExceptionVector.GP or ExceptionVector.PF or ExceptionVector.AC;

    /// <summary>
    /// Delivers exception <paramref name="vector"/> (RIP = the return address already in state). Faults during
    /// delivery escalate per SDM table 6-5 (#DF, then triple fault). Returns false on triple fault.
    /// </summary>
    public bool DeliverException(int vector, bool hasErrorCode, uint errorCode)
    {
        int current = vector;
        bool curHas = hasErrorCode;
        uint curCode = errorCode;
        for (int attempt = 0; attempt < 3; attempt++)
        {
            if (TryDeliver(current, curHas, curCode, software: false))
            {
                return true;
            }
            // Delivery raised Event (an exception); combine per table 6-5.
            if (Event.Kind != EventKind.Exception) return false; // EPT violation during delivery: caller reports it
            int second = Event.Vector;
            if (current == ExceptionVector.DF) return false; // triple fault
            bool df = (IsContributory(current) && IsContributory(second))
                || (current == ExceptionVector.PF && (IsContributory(second) || second == ExceptionVector.PF));
            if (df)
            {
                current = ExceptionVector.DF; curHas = true; curCode = 0;
            }
            else
            {
                current = second; curHas = Event.HasErrorCode; curCode = Event.ErrorCode;
            }
        }
        return false;
    }

    private bool TryDeliver(int vector, bool hasErr, uint err, bool software)
    {
        ref CpuState s = ref S;
        ulong flags = s.GetRflags();
        if ((s.Cr0 & 1) == 0)
        {
            // Real mode: IVT entry = offset:segment (4 bytes).
            ulong entry = s.IdtrBase + (ulong)vector * 4;
            if ((ulong)vector * 4 + 3 > s.IdtrLimit) { RaiseException(ExceptionVector.GP, 0); return false; }
            if (!Read(entry & 0xFFFF_FFFF, 4, out ulong ivt)) return false;
            int saved = StackSize;
            StackSize = 2;
            bool ok = Push(flags, 2) && Push(s.Cs.Selector, 2) && Push(s.Rip, 2);
            StackSize = saved;
            if (!ok) return false;
            s.Cs.Selector = (ushort)(ivt >> 16);
            s.Cs.Base = (ulong)(ushort)(ivt >> 16) << 4;
            s.Rip = (ushort)ivt;
            s.SetRflags(flags & ~(RflagsBits.IF | RflagsBits.TF | RflagsBits.AC | RflagsBits.RF));
            RefreshMode();
            return true;
        }
        bool lm = (s.Efer & (1UL << 10)) != 0;
        int entrySize = lm ? 16 : 8;
        uint idtError = (uint)(vector * 8 + 2); // IDT bit set, EXT set
        if ((ulong)(vector * entrySize + entrySize - 1) > s.IdtrLimit) { RaiseException(ExceptionVector.GP, idtError); return false; }
        ulong gateAddr = s.IdtrBase + (ulong)(vector * entrySize);
        if (!ReadSystem(gateAddr, out ulong lo)) return false;
        ulong hi = 0;
        if (lm && !ReadSystem(gateAddr + 8, out hi)) return false;
        int type = (int)((lo >> 40) & 0xF);
        bool present = ((lo >> 47) & 1) != 0;
        bool is32 = type is 0xE or 0xF;
        bool isInterrupt = type is 0xE or 0x6;
        if (!(type is 0xE or 0xF || (!lm && type is 0x6 or 0x7))) { RaiseException(ExceptionVector.GP, idtError); return false; }
        if (!present) { RaiseException(ExceptionVector.NP, idtError); return false; }
        ushort selector = (ushort)(lo >> 16);
        ulong offset = (lo & 0xFFFF) | ((lo >> 32) & 0xFFFF_0000UL) | (lm ? (hi & 0xFFFF_FFFFUL) << 32 : 0);
        if (!ReadDescriptor(selector, out SegmentRegister cs)) { RaiseException(ExceptionVector.GP, (uint)(selector & ~3) | 1); return false; }
        // Must be a present code segment; privilege changes need a TSS stack switch (not modelled: #GP).
        int cpl = s.Cs.Selector & 3;
        int dpl = (int)((cs.AccessRights >> 5) & 3);
        if ((cs.AccessRights & 0x18) != 0x18 || (cs.AccessRights & 0x80) == 0 || dpl != cpl)
        {
            RaiseException(ExceptionVector.GP, (uint)(selector & ~3) | 1);
            return false;
        }
        ulong oldCs = s.Cs.Selector, oldRip = s.Rip, oldRsp = s.Gpr[4];
        int pushSize = lm ? 8 : is32 ? 4 : 2;
        bool ok2;
        int savedStack = StackSize;
        if (lm)
        {
            // SDM §6.14.2: 64-bit mode aligns RSP to 16 and always pushes SS:RSP.
            StackSize = 8;
            s.Gpr[4] &= ~0xFUL;
            ok2 = Push(s.Ss.Selector, 8) && Push(oldRsp, 8);
        }
        else ok2 = true;
        ok2 = ok2 && Push(flags, pushSize) && Push(oldCs, pushSize) && Push(oldRip, pushSize);
        if (ok2 && hasErr) ok2 = Push(err, pushSize);
        StackSize = savedStack;
        if (!ok2)
        {
            s.Gpr[4] = oldRsp;
            return false;
        }
        cs.Selector = (ushort)((selector & ~3) | cpl);
        s.Cs = cs;
        s.Rip = lm ? offset : is32 ? (uint)offset : (ushort)offset;
        ulong clear = RflagsBits.TF | RflagsBits.NT | RflagsBits.RF | RflagsBits.VM | (isInterrupt ? RflagsBits.IF : 0);
        s.SetRflags(flags & ~clear);
        RefreshMode();
        return true;
    }

    /// <summary>Reads 8 bytes of a system structure (GDT, LDT, IDT, TSS) as an implicit supervisor access (SDM Vol. 3A §4.6).</summary>
    public bool ReadSystem(ulong lin, out ulong value)
    {
        bool saved = ImplicitSupervisor;
        ImplicitSupervisor = true;
        bool ok = Read(lin & LinearMask, 8, out value);
        ImplicitSupervisor = saved;
        return ok;
    }

    /// <summary>Reads a GDT descriptor into hidden-part form (VMCS access-rights format).</summary>
    public bool ReadDescriptor(ushort selector, out SegmentRegister seg)
    {
        seg = default;
        ref CpuState s = ref S;
        if ((selector & 4) != 0 || (selector & ~7) == 0) return false; // LDT not modelled; null selector
        ulong index = (ulong)(selector & ~7);
        if (index + 7 > s.GdtrLimit) return false;
        if (!ReadSystem(s.GdtrBase + index, out ulong d)) return false;
        seg.Selector = selector;
        seg.AccessRights = (uint)((d >> 40) & 0xF0FF);
        uint limit = (uint)((d & 0xFFFF) | ((d >> 32) & 0xF0000));
        if ((d & (1UL << 55)) != 0) limit = (limit << 12) | 0xFFF;
        seg.Limit = limit;
        seg.Base = ((d >> 16) & 0xFF_FFFF) | (((d >> 56) & 0xFF) << 24);
        return true;
    }
}
