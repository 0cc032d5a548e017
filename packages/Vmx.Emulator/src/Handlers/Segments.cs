using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Handlers;

/// <summary>Data-segment register loads: MOV Sreg, r/m and POP Sreg (SDM Vol. 2 MOV, POP; Vol. 3A §3.4.3, §5.4.1).</summary>
internal static unsafe class Segments
{
    private const int ES = 0, CS = 1, SS = 2;

    /// <summary>MOV Sreg, r/m16.</summary>
    public static int MovToSreg(Core c, Instr* i)
    {
        int seg = i->Op0;
        if (seg == CS) return c.RaiseUD(); // SDM MOV: loading CS with MOV is #UD
        ulong sel;
        if (i->Op1 != Instr.MemoryOperand) sel = c.GetReg(i->Op1, 2);
        else if (!c.Read(c.LinearAddress(i), 2, out sel)) return ExecStatus.Event;
        if (!Load(c, seg, (ushort)sel)) return ExecStatus.Event;
        if (seg == SS) c.SetShadow(i, 2); // MOV SS blocks interrupts and debug traps for one instruction
        return ExecStatus.Continue;
    }

    /// <summary>POP Sreg (Sub = pop size); RSP moves only when the load succeeds.</summary>
    public static int PopSreg(Core c, Instr* i)
    {
        int size = i->Sub;
        ulong rsp = c.StackOffset(0);
        if (!c.Read(c.Linear(SS, rsp), size, out ulong v)) return ExecStatus.Event;
        ulong oldRsp = c.S.Gpr[4];
        if (!Load(c, i->Op0, (ushort)v))
        {
            c.S.Gpr[4] = oldRsp;
            return ExecStatus.Event;
        }
        c.SetStackPointer(rsp + (ulong)size);
        if (i->Op0 == SS) c.SetShadow(i, 2);
        return ExecStatus.Continue;
    }

    /// <summary>Loads a data or stack segment register; false with the fault in <see cref="Core.Event"/>.</summary>
    public static bool Load(Core c, int seg, ushort selector)
    {
        ref CpuState s = ref c.S;
        ref SegmentRegister target = ref s.Segment(seg);
        if ((s.Cr0 & 1) == 0 || (s.Rflags & RflagsBits.VM) != 0)
        {
            // Real (and virtual-8086) mode: base = selector * 16, limit and attributes unchanged.
            target.Selector = selector;
            target.Base = (ulong)selector << 4;
            c.RefreshMode();
            return true;
        }
        int cpl = s.Cs.Selector & 3;
        int rpl = selector & 3;
        if ((selector & ~3) == 0)
        {
            // Null selector: allowed for DS/ES/FS/GS (segment becomes unusable); SS only in 64-bit mode at CPL < 3.
            if (seg == SS && (c.Bitness != 64 || cpl == 3)) { c.RaiseException(ExceptionVector.GP, 0); return false; }
            target.Selector = selector;
            target.AccessRights = 1u << 16; // unusable (VMCS access-rights bit 16)
            if (c.Bitness != 64 || seg == SS) target.Base = 0;
            c.RefreshMode();
            return true;
        }
        c.Event = default; // a stale event from an earlier exit must not be mistaken for a fault of this read
        if (!c.ReadDescriptor(selector, out SegmentRegister d))
        {
            if (c.Event.Kind != EventKind.None && c.Event.Kind != EventKind.Exception) return false; // EPT exit while reading the GDT
            c.RaiseException(ExceptionVector.GP, (uint)(selector & ~3));
            return false;
        }
        uint type = d.AccessRights & 0xF;
        bool isSystem = (d.AccessRights & 0x10) == 0;
        bool isCode = (type & 8) != 0;
        int dpl = (int)((d.AccessRights >> 5) & 3);
        if (seg == SS)
        {
            // SDM MOV/POP SS: writable data segment, RPL = CPL = DPL.
            if (isSystem || isCode || (type & 2) == 0 || rpl != cpl || dpl != cpl) { c.RaiseException(ExceptionVector.GP, (uint)(selector & ~3)); return false; }
            if ((d.AccessRights & 0x80) == 0) { c.RaiseException(ExceptionVector.SS, (uint)(selector & ~3)); return false; }
        }
        else
        {
            // Data or readable code; for data and non-conforming code, max(CPL, RPL) <= DPL.
            bool conforming = isCode && (type & 4) != 0;
            if (isSystem || (isCode && (type & 2) == 0) || (!conforming && (Math.Max(cpl, rpl) > dpl)))
            {
                c.RaiseException(ExceptionVector.GP, (uint)(selector & ~3));
                return false;
            }
            if ((d.AccessRights & 0x80) == 0) { c.RaiseException(ExceptionVector.NP, (uint)(selector & ~3)); return false; }
        }
        // The load sets the descriptor's accessed bit in memory (SDM Vol. 3A §3.4.5.1).
        if ((d.AccessRights & 1) == 0 && !c.SetDescriptorAccessed(selector)) return false;
        d.AccessRights |= 1;
        target = d;
        c.RefreshMode();
        return true;
    }
}
