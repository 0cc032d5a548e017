using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Handlers;

/// <summary>Control transfer (SDM Vol. 1 §6.3, §7.3.8): Jcc, JMP, CALL, RET, LOOPcc, JrCXZ, SETcc, CMOVcc.</summary>
internal static unsafe class ControlFlow
{
    /// <summary>Jcc rel: Sub = condition code 0..15.</summary>
    public static int Jcc(Core c, Instr* i)
    {
        c.S.Rip = LazyFlags.Condition(ref c.S, i->Sub) ? i->Imm : i->NextIp;
        return ExecStatus.Jump;
    }

    /// <summary>JMP rel.</summary>
    public static int JmpRel(Core c, Instr* i)
    {
        c.S.Rip = i->Imm;
        return ExecStatus.Jump;
    }

    /// <summary>JMP r/m (near, absolute indirect).</summary>
    public static int JmpIndirect(Core c, Instr* i)
    {
        if (!c.ReadOp0(i, out ulong t)) return ExecStatus.Event;
        c.S.Rip = t;
        return ExecStatus.Jump;
    }

    /// <summary>CALL rel: Sub = push size.</summary>
    public static int CallRel(Core c, Instr* i)
    {
        if (!c.Push(i->NextIp, i->Sub)) return ExecStatus.Event;
        c.S.Rip = i->Imm;
        return ExecStatus.Jump;
    }

    /// <summary>CALL r/m: Sub = push size.</summary>
    public static int CallIndirect(Core c, Instr* i)
    {
        if (!c.ReadOp0(i, out ulong t)) return ExecStatus.Event;
        if (!c.Push(i->NextIp, i->Sub)) return ExecStatus.Event;
        c.S.Rip = i->Sub switch { 2 => (ushort)t, 4 => (uint)t, _ => t };
        return ExecStatus.Jump;
    }

    /// <summary>RET / RET imm16: Sub = pop size.</summary>
    public static int Ret(Core c, Instr* i)
    {
        int size = i->Sub;
        ulong rsp = c.StackOffset(0);
        if (!c.Read(c.Linear(2, rsp), size, out ulong t)) return ExecStatus.Event;
        c.SetStackPointer(rsp + (ulong)size + (ushort)i->Imm);
        c.S.Rip = size switch { 2 => (ushort)t, 4 => (uint)t, _ => t };
        return ExecStatus.Jump;
    }

    private static ulong CountRegister(Core c, Instr* i) => c.GetReg(1, i->AddrSize);

    /// <summary>LOOP (Sub = 0), LOOPE (1), LOOPNE (2): count register width is the address size.</summary>
    public static int Loop(Core c, Instr* i)
    {
        ref CpuState s = ref c.S;
        ulong count = CountRegister(c, i) - 1;
        c.SetReg(1, i->AddrSize, count);
        count &= Arithmetic.SizeMask(i->AddrSize);
        bool take = count != 0;
        if (take && i->Sub == 1) take = LazyFlags.Condition(ref s, 4);
        else if (take && i->Sub == 2) take = LazyFlags.Condition(ref s, 5);
        s.Rip = take ? i->Imm : i->NextIp;
        return ExecStatus.Jump;
    }

    /// <summary>JCXZ/JECXZ/JRCXZ.</summary>
    public static int Jrcxz(Core c, Instr* i)
    {
        c.S.Rip = CountRegister(c, i) == 0 ? i->Imm : i->NextIp;
        return ExecStatus.Jump;
    }

    /// <summary>SETcc r/m8: Sub = condition.</summary>
    public static int Setcc(Core c, Instr* i)
    {
        ulong v = LazyFlags.Condition(ref c.S, i->Sub) ? 1UL : 0;
        return c.WriteOp0(i, v) ? ExecStatus.Continue : ExecStatus.Event;
    }

    /// <summary>CMOVcc r, r/m: the source is read even when false; a 32-bit destination is zero-extended either way (SDM CMOVcc).</summary>
    public static int Cmovcc(Core c, Instr* i)
    {
        if (!c.ReadOp1(i, out ulong v)) return ExecStatus.Event;
        if (LazyFlags.Condition(ref c.S, i->Sub)) c.SetReg(i->Op0, i->OpSize, v);
        else if (i->OpSize == 4) c.SetReg(i->Op0, 4, c.GetReg(i->Op0, 4));
        return ExecStatus.Continue;
    }
}
