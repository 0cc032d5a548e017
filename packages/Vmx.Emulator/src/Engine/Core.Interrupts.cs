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
    /// <paramref name="software"/>: INT n / INT3 / INTO or an injected software interrupt/exception (gate DPL checked
    /// against CPL, EXT = 0 in error codes, SDM Vol. 3A §6.12.1.1).
    /// </summary>
    public bool DeliverException(int vector, bool hasErrorCode, uint errorCode, bool software = false)
    {
        int current = vector;
        bool curHas = hasErrorCode;
        uint curCode = errorCode;
        bool soft = software;
        for (int attempt = 0; attempt < 3; attempt++)
        {
            if (TryDeliver(current, curHas, curCode, soft))
            {
                return true;
            }
            soft = false;
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

    /// <summary>One delivery attempt without escalation (INT n: a fault here is reported at the INT instruction).</summary>
    public bool TryDeliver(int vector, bool hasErr, uint err, bool software)
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
        bool lm = (s.Efer & ControlBits.EferLma) != 0;
        int entrySize = lm ? 16 : 8;
        uint ext = software ? 0u : 1u;
        uint idtError = (uint)(vector * 8 + 2) | ext; // IDT bit, EXT for events external to the program
        if ((ulong)(vector * entrySize + entrySize - 1) > s.IdtrLimit) { RaiseException(ExceptionVector.GP, idtError); return false; }
        ulong gateAddr = s.IdtrBase + (ulong)(vector * entrySize);
        if (!ReadSystem(gateAddr, out ulong lo)) return false;
        ulong hi = 0;
        if (lm && !ReadSystem(gateAddr + 8, out hi)) return false;
        int type = (int)((lo >> 40) & 0x1F); // including the S bit (must be 0: system descriptor)
        bool present = ((lo >> 47) & 1) != 0;
        int gateDpl = (int)((lo >> 45) & 3);
        bool is32 = type is 0xE or 0xF;
        bool isInterrupt = type is 0xE or 0x6;
        if (!(type is 0xE or 0xF || (!lm && type is 0x6 or 0x7))) { RaiseException(ExceptionVector.GP, idtError); return false; }
        int cpl = Cpl;
        // SDM §6.12.1.1: software interrupts need CPL <= gate DPL.
        if (software && cpl > gateDpl) { RaiseException(ExceptionVector.GP, idtError); return false; }
        if (!present) { RaiseException(ExceptionVector.NP, idtError); return false; }
        ushort selector = (ushort)(lo >> 16);
        ulong offset = (lo & 0xFFFF) | ((lo >> 32) & 0xFFFF_0000UL) | (lm ? (hi & 0xFFFF_FFFFUL) << 32 : 0);
        uint selError = (uint)(selector & ~3) | ext;
        if ((selector & ~3) == 0) { RaiseException(ExceptionVector.GP, ext); return false; }
        Event = default;
        if (!ReadDescriptor(selector, out SegmentRegister cs))
        {
            if (Event.Kind != EventKind.None) return false;
            RaiseException(ExceptionVector.GP, selError);
            return false;
        }
        int dpl = (int)((cs.AccessRights >> 5) & 3);
        bool conforming = (cs.AccessRights & 4) != 0;
        if ((cs.AccessRights & 0x18) != 0x18 || dpl > cpl) { RaiseException(ExceptionVector.GP, selError); return false; }
        if (lm && ((cs.AccessRights & (1u << 13)) == 0 || (cs.AccessRights & (1u << 14)) != 0)) { RaiseException(ExceptionVector.GP, selError); return false; }
        if ((cs.AccessRights & 0x80) == 0) { RaiseException(ExceptionVector.NP, selError); return false; }
        int newCpl = conforming ? cpl : dpl;
        int ist = lm ? (int)((lo >> 32) & 7) : 0;
        ulong oldCs = s.Cs.Selector, oldRip = s.Rip, oldRsp = s.Gpr[4];
        SegmentRegister oldSs = s.Ss;
        int savedStack = StackSize;
        ulong newRsp = oldRsp;
        SegmentRegister newSs = oldSs;
        bool stackSwitch = newCpl < cpl || ist != 0;
        if (stackSwitch)
        {
            // SDM §6.14.4 (64-bit: RSPn or ISTn from the TSS, SS = NULL with RPL = new CPL) and §6.12.1 (legacy:
            // SSn:ESPn from the TSS, checked like a stack segment, #TS on errors).
            if (!StackFromTss(newCpl, ist, lm, ext, out newRsp, out newSs)) return false;
        }
        int pushSize = lm ? 8 : is32 ? 4 : 2;
        if (lm) newRsp &= ~0xFUL; // 64-bit mode aligns the new stack to 16 bytes (§6.14.2)
        // Push on the new stack (supervisor accesses at the new CPL).
        s.Ss = newSs;
        s.Gpr[4] = newRsp;
        s.Cs.Selector = (ushort)((s.Cs.Selector & ~3) | newCpl);
        int oldCplBits = (int)((oldSs.AccessRights >> 5) & 3);
        s.Ss.AccessRights = (s.Ss.AccessRights & ~0x60u) | ((uint)newCpl << 5);
        RefreshMode();
        bool ok2 = true;
        if (lm || newCpl < cpl)
        {
            StackSize = lm ? 8 : StackSize;
            ok2 = Push(oldSs.Selector, pushSize) && Push(oldRsp, pushSize);
        }
        ok2 = ok2 && Push(flags, pushSize) && Push(oldCs, pushSize) && Push(oldRip, pushSize);
        if (ok2 && hasErr) ok2 = Push(err, pushSize);
        StackSize = savedStack;
        if (!ok2)
        {
            s.Ss = oldSs;
            s.Ss.AccessRights = (s.Ss.AccessRights & ~0x60u) | ((uint)oldCplBits << 5);
            s.Cs.Selector = (ushort)oldCs;
            s.Gpr[4] = oldRsp;
            RefreshMode();
            return false;
        }
        cs.Selector = (ushort)((selector & ~3) | newCpl);
        cs.AccessRights |= 1;
        s.Cs = cs;
        s.Rip = lm ? offset : is32 ? (uint)offset : (ushort)offset;
        ulong clear = RflagsBits.TF | RflagsBits.NT | RflagsBits.RF | RflagsBits.VM | (isInterrupt ? RflagsBits.IF : 0);
        s.SetRflags(flags & ~clear);
        RefreshMode();
        return true;
    }

    /// <summary>Reads the inner stack for an interrupt to <paramref name="newCpl"/> (or IST entry <paramref name="ist"/>) from the TSS.</summary>
    private bool StackFromTss(int newCpl, int ist, bool lm, uint ext, out ulong rsp, out SegmentRegister ss)
    {
        ref CpuState s = ref S;
        rsp = 0;
        ss = default;
        uint tsError = (uint)(s.Tr.Selector & ~3) | ext;
        if (lm)
        {
            ulong off = ist != 0 ? 0x24 + (ulong)(ist - 1) * 8 : 4 + (ulong)newCpl * 8;
            if (off + 7 > s.Tr.Limit) { RaiseException(ExceptionVector.TS, tsError); return false; }
            if (!ReadSystem(s.Tr.Base + off, out rsp)) return false;
            if ((ulong)(((long)rsp << 16) >> 16) != rsp) { RaiseException(ExceptionVector.SS, ext); return false; }
            ss = new SegmentRegister { Selector = (ushort)newCpl, AccessRights = (1u << 16) | 0x13 | ((uint)newCpl << 5) };
            return true;
        }
        bool tss32 = (s.Tr.AccessRights & 0xF) is 9 or 11;
        ulong espOff = tss32 ? 4 + (ulong)newCpl * 8 : 2 + (ulong)newCpl * 4;
        ulong ssOff = tss32 ? espOff + 4 : espOff + 2;
        if (ssOff + 1 > s.Tr.Limit) { RaiseException(ExceptionVector.TS, tsError); return false; }
        if (!ReadSystem(s.Tr.Base + espOff, out ulong raw)) return false;
        rsp = tss32 ? (uint)raw : (ushort)raw;
        if (!ReadSystem(s.Tr.Base + ssOff, out ulong rawSs)) return false;
        ushort ssSel = (ushort)rawSs;
        uint ssError = (uint)(ssSel & ~3) | ext;
        if ((ssSel & ~3) == 0) { RaiseException(ExceptionVector.TS, ext); return false; }
        Event = default;
        if (!ReadDescriptor(ssSel, out ss))
        {
            if (Event.Kind != EventKind.None) return false;
            RaiseException(ExceptionVector.TS, ssError);
            return false;
        }
        int ssDpl = (int)((ss.AccessRights >> 5) & 3);
        bool writableData = (ss.AccessRights & 0x1A) == 0x12;
        if ((ssSel & 3) != newCpl || ssDpl != newCpl || !writableData) { RaiseException(ExceptionVector.TS, ssError); return false; }
        if ((ss.AccessRights & 0x80) == 0) { RaiseException(ExceptionVector.SS, ssError); return false; }
        ss.AccessRights |= 1;
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

    /// <summary>
    /// The linear address of the descriptor <paramref name="selector"/> names in the GDT or (TI = 1) the LDT; false for a
    /// null GDT selector, an unusable LDTR or an index past the table's limit (SDM Vol. 3A §3.5.1).
    /// </summary>
    public bool DescriptorAddress(ushort selector, out ulong address)
    {
        ref CpuState s = ref S;
        ulong index = (ulong)(selector & ~7);
        address = 0;
        if ((selector & 4) != 0)
        {
            if ((s.Ldtr.AccessRights & (1u << 16)) != 0 || (s.Ldtr.Selector & ~3) == 0 || index + 7 > s.Ldtr.Limit) return false;
            address = s.Ldtr.Base + index;
            return true;
        }
        if (index == 0 || index + 7 > s.GdtrLimit) return false;
        address = s.GdtrBase + index;
        return true;
    }

    /// <summary>Reads the 8-byte descriptor a selector names; false without <see cref="Event"/> when it names none.</summary>
    public bool ReadRawDescriptor(ushort selector, out ulong descriptor)
    {
        descriptor = 0;
        return DescriptorAddress(selector, out ulong address) && ReadSystem(address, out descriptor);
    }

    /// <summary>
    /// Sets the accessed bit of a code or data descriptor in memory, as a segment load does (SDM Vol. 3A §3.4.5.1);
    /// an implicit supervisor write.
    /// </summary>
    public bool SetDescriptorAccessed(ushort selector)
    {
        if (!DescriptorAddress(selector, out ulong address) || !ReadSystem(address, out ulong d)) return false;
        if ((d & (1UL << 40)) != 0) return true;
        bool saved = ImplicitSupervisor;
        ImplicitSupervisor = true;
        bool ok = Write((address + 5) & LinearMask, 1, ((d >> 40) & 0xFF) | 1);
        ImplicitSupervisor = saved;
        return ok;
    }

    /// <summary>Reads a GDT or LDT descriptor into hidden-part form (VMCS access-rights format).</summary>
    public bool ReadDescriptor(ushort selector, out SegmentRegister seg)
    {
        seg = default;
        if (!ReadRawDescriptor(selector, out ulong d)) return false;
        seg.Selector = selector;
        seg.AccessRights = (uint)((d >> 40) & 0xF0FF);
        uint limit = (uint)((d & 0xFFFF) | ((d >> 32) & 0xF0000));
        if ((d & (1UL << 55)) != 0) limit = (limit << 12) | 0xFFF;
        seg.Limit = limit;
        seg.Base = ((d >> 16) & 0xFF_FFFF) | (((d >> 56) & 0xFF) << 24);
        return true;
    }
}
