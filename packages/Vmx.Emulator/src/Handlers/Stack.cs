using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Handlers;

/// <summary>Stack instructions (SDM Vol. 1 §6.2, §7.3.1.5): PUSH/POP in all forms, PUSHA/POPA, ENTER/LEAVE, PUSHF/POPF.</summary>
internal static unsafe class Stack
{
    /// <summary>PUSH r/m|imm|Sreg; Sub = push size in bytes.</summary>
    public static int Push(Core c, Instr* i)
    {
        int size = i->Sub;
        ulong v;
        if (i->Op0 == Instr.NoRegister) v = i->Imm;
        else if (i->Op0 == Instr.MemoryOperand) { if (!c.Read(c.LinearAddress(i), size, out v)) return ExecStatus.Event; }
        else v = c.GetReg(i->Op0, size);
        return c.Push(v, size) ? ExecStatus.Continue : ExecStatus.Event;
    }

    /// <summary>PUSH Sreg: pushes the selector (Sub = size; a 32/64-bit push writes only 16 bits on recent processors — we write zero-extended).</summary>
    public static int PushSreg(Core c, Instr* i) =>
        c.Push(c.S.Segment(i->Op0).Selector, i->Sub) ? ExecStatus.Continue : ExecStatus.Event;

    /// <summary>POP r/m; Sub = size. A memory destination using RSP is computed after the increment (SDM POP).</summary>
    public static int Pop(Core c, Instr* i)
    {
        int size = i->Sub;
        ulong rsp = c.StackOffset(0);
        if (!c.Read(c.Linear(2, rsp), size, out ulong v)) return ExecStatus.Event;
        if (i->Op0 == Instr.MemoryOperand)
        {
            ulong old = c.S.Gpr[4];
            c.SetStackPointer(rsp + (ulong)size);
            if (!c.Write(c.LinearAddress(i), size, v))
            {
                c.S.Gpr[4] = old;
                return ExecStatus.Event;
            }
            return ExecStatus.Continue;
        }
        c.SetStackPointer(rsp + (ulong)size);
        c.SetReg(i->Op0, size, v);
        return ExecStatus.Continue;
    }

    /// <summary>PUSHA/PUSHAD (Sub = size): AX CX DX BX original-SP BP SI DI.</summary>
    public static int Pusha(Core c, Instr* i)
    {
        int size = i->Sub;
        ulong sp = c.StackOffset(0);
        for (int r = 0; r < 8; r++)
        {
            ulong a = c.StackOffset(-(long)size * (r + 1));
            ulong v = r == 4 ? sp : c.GetReg(r, size);
            if (!c.Write(c.Linear(2, a), size, v)) return ExecStatus.Event;
        }
        c.SetStackPointer(c.StackOffset(-(long)size * 8));
        return ExecStatus.Continue;
    }

    /// <summary>POPA/POPAD: the saved SP is discarded.</summary>
    public static int Popa(Core c, Instr* i)
    {
        int size = i->Sub;
        Span<ulong> vals = stackalloc ulong[8];
        for (int r = 0; r < 8; r++)
        {
            if (!c.Read(c.Linear(2, c.StackOffset((long)size * (7 - r))), size, out vals[r])) return ExecStatus.Event;
        }
        for (int r = 0; r < 8; r++)
        {
            if (r != 4) c.SetReg(r, size, vals[r]);
        }
        c.SetStackPointer(c.StackOffset((long)size * 8));
        return ExecStatus.Continue;
    }

    /// <summary>ENTER imm16, imm8 (SDM ENTER, nesting level mod 32).</summary>
    public static int Enter(Core c, Instr* i)
    {
        int size = i->Sub;
        ulong allocSize = (ushort)i->Imm;
        int level = (int)(i->Imm2 & 31);
        ref CpuState s = ref c.S;
        ulong oldRsp = s.Gpr[4];
        ulong oldRbp = s.Gpr[5];
        if (!c.Push(c.GetReg(5, size), size)) return ExecStatus.Event;
        ulong frameTemp = c.StackOffset(0);
        ulong bp = c.GetReg(5, c.StackSize);
        if (level > 0)
        {
            for (int k = 1; k < level; k++)
            {
                bp = c.StackSize switch { 8 => bp - (ulong)size, 4 => (uint)(bp - (ulong)size), _ => (ushort)(bp - (ulong)size) };
                if (!c.Read(c.Linear(2, bp), size, out ulong v) || !c.Push(v, size))
                {
                    s.Gpr[4] = oldRsp; s.Gpr[5] = oldRbp;
                    return ExecStatus.Event;
                }
            }
            if (!c.Push(frameTemp, size)) { s.Gpr[4] = oldRsp; return ExecStatus.Event; }
        }
        ulong newRsp = c.StackOffset(-(long)allocSize);
        // The final stack pointer must be writable (SDM: #SS/#PF if it is not).
        if (allocSize != 0 && !c.Probe(c.Linear(2, newRsp), 1, MemoryAccess.Write)) { s.Gpr[4] = oldRsp; return ExecStatus.Event; }
        c.SetReg(5, size, frameTemp);
        c.SetStackPointer(newRsp);
        return ExecStatus.Continue;
    }

    /// <summary>LEAVE: rSP = rBP; pop rBP.</summary>
    public static int Leave(Core c, Instr* i)
    {
        int size = i->Sub;
        ref CpuState s = ref c.S;
        ulong bp = c.GetReg(5, c.StackSize);
        if (!c.Read(c.Linear(2, bp), size, out ulong v)) return ExecStatus.Event;
        c.SetStackPointer(bp + (ulong)size);
        c.SetReg(5, size, v);
        return ExecStatus.Continue;
    }

    /// <summary>PUSHF/PUSHFD/PUSHFQ: VM and RF are pushed as 0 (SDM PUSHF).</summary>
    public static int Pushf(Core c, Instr* i)
    {
        ulong f = c.S.GetRflags() & ~(RflagsBits.VM | RflagsBits.RF);
        return c.Push(f, i->Sub) ? ExecStatus.Continue : ExecStatus.Event;
    }

    /// <summary>POPF/POPFD/POPFQ at CPL 0: every writable flag except VM, VIF, VIP; RF cleared (SDM POPF).</summary>
    public static int Popf(Core c, Instr* i)
    {
        int size = i->Sub;
        if (!c.Pop(size, out ulong v)) return ExecStatus.Event;
        ref CpuState s = ref c.S;
        ulong old = s.GetRflags();
        ulong keep = RflagsBits.VM | RflagsBits.VIF | RflagsBits.VIP | RflagsBits.RF;
        int cpl = (int)(s.Cs.Selector & 3);
        if (cpl > 0) keep |= RflagsBits.IOPL;
        if (cpl > (int)((old >> 12) & 3)) keep |= RflagsBits.IF;
        ulong writable = size == 2 ? 0xFFFFUL : ulong.MaxValue;
        keep |= ~writable;
        ulong nf = (old & keep) | (v & ~keep);
        nf &= ~RflagsBits.RF;
        s.SetRflags(nf);
        if (((old ^ nf) & RflagsBits.AC) != 0 && (s.Cr4 & ControlBits.Cr4Smap) != 0) c.FlushTlb(); // SMAP depends on AC
        return ExecStatus.Continue;
    }
}
