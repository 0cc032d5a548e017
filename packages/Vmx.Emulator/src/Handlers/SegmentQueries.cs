using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Handlers;

/// <summary>
/// LAR, LSL, VERR, VERW (SDM Vol. 2A LAR, LSL; Vol. 2C VERR/VERW): they test a selector without loading it and report
/// the outcome in ZF. A selector that is null, past its table's limit, of a type the instruction does not accept, or
/// not accessible at max(CPL, RPL) clears ZF (and leaves the destination unchanged) instead of faulting; only the
/// descriptor read itself can fault (#PF, EPT violation). Not-present descriptors are accepted.
/// </summary>
internal static unsafe class SegmentQueries
{
    /// <summary>Sub values: which instruction.</summary>
    public const byte Lar = 0, Lsl = 1, Verr = 2, Verw = 3;

    /// <summary>LAR/LSL r, r/m16 and VERR/VERW r/m16; <see cref="Instr.Sub"/> selects the instruction.</summary>
    public static int Query(Core c, Instr* i)
    {
        ref CpuState s = ref c.S;
        if ((s.Cr0 & 1) == 0 || (s.Rflags & RflagsBits.VM) != 0) return c.RaiseUD(); // protected mode only
        bool verify = i->Sub >= Verr;
        int src = verify ? i->Op0 : i->Op1;
        ulong sel;
        if (src != Instr.MemoryOperand) sel = c.GetReg(src, 2);
        else if (!c.Read(c.LinearAddress(i), 2, out sel)) return ExecStatus.Event;
        ushort selector = (ushort)sel;

        c.Event = default;
        if (!c.ReadRawDescriptor(selector, out ulong d))
        {
            if (c.Event.Kind != EventKind.None) return ExecStatus.Event; // the descriptor read faulted
            return SetZf(c, false);
        }
        uint type = (uint)(d >> 40) & 0xF;
        bool isSystem = ((d >> 44) & 1) == 0;
        bool isCode = !isSystem && (type & 8) != 0;
        bool conforming = isCode && (type & 4) != 0;
        int dpl = (int)((d >> 45) & 3);
        int rpl = selector & 3;
        int cpl = c.Cpl;
        // Every instruction but VERR on conforming code checks DPL >= max(CPL, RPL).
        bool privileged = dpl >= Math.Max(cpl, rpl);

        bool ok;
        switch (i->Sub)
        {
            case Verr:
                ok = !isSystem && (!isCode || (type & 2) != 0) && (conforming || privileged);
                return SetZf(c, ok);
            case Verw:
                ok = !isSystem && !isCode && (type & 2) != 0 && privileged;
                return SetZf(c, ok);
        }

        if (isSystem)
        {
            // LAR: TSS (available/busy, 16/32-bit), LDT, call and task gates; LSL: no gates.
            // In IA-32e mode only the LDT, 64-bit TSS and (for LAR) the 64-bit call gate are valid.
            bool lma = (s.Efer & ControlBits.EferLma) != 0;
            ok = lma
                ? type is 0x2 or 0x9 or 0xB || (i->Sub == Lar && type == 0xC)
                : type is 0x1 or 0x2 or 0x3 or 0x9 or 0xB || (i->Sub == Lar && type is 0x4 or 0x5 or 0xC);
            if (!ok || !privileged) return SetZf(c, false);
        }
        else if (!conforming && !privileged)
        {
            return SetZf(c, false);
        }

        ulong value;
        if (i->Sub == Lar)
        {
            value = (d >> 32) & 0x00F0_FF00; // bits 23:8 of the descriptor's upper doubleword, masked by 00FxFF00H
        }
        else
        {
            value = (d & 0xFFFF) | ((d >> 32) & 0xF_0000);
            if ((d & (1UL << 55)) != 0) value = (value << 12) | 0xFFF; // G: 4-KiB granularity
        }
        c.SetReg(i->Op0, i->OpSize, i->OpSize == 2 ? value & 0xFFFF : value);
        return SetZf(c, true);
    }

    private static int SetZf(Core c, bool set)
    {
        LazyFlags.SetEager(ref c.S, RflagsBits.ZF, set ? RflagsBits.ZF : 0);
        return ExecStatus.Continue;
    }
}
