using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Handlers;

/// <summary>String instructions with REP/REPE/REPNE and both directions (SDM Vol. 1 §7.3.9).</summary>
internal static unsafe class Strings
{
    /// <summary>Kind in <see cref="Instr.Sub"/>.</summary>
    public const byte Movs = 0, Cmps = 1, Scas = 2, Lods = 3, Stos = 4;

    /// <summary>Iterations done per handler call before returning <see cref="ExecStatus.Restart"/> (keeps exits and budgets responsive).</summary>
    private const int Chunk = 4096;

    private static ulong Step(Core c, ulong reg, long delta, int addrSize)
    {
        ulong v = reg + (ulong)delta;
        return addrSize switch { 8 => v, 4 => (uint)v, _ => (ushort)v };
    }

    /// <summary>MOVS/CMPS/SCAS/LODS/STOS of <see cref="Instr.MemSize"/> bytes.</summary>
    public static int String(Core c, Instr* i)
    {
        ref CpuState s = ref c.S;
        int size = i->MemSize;
        int a = i->AddrSize;
        ulong amask = Arithmetic.SizeMask(a);
        long delta = (s.Rflags & RflagsBits.DF) != 0 ? -size : size;
        bool rep = (i->Flags & (InstrFlags.Rep | InstrFlags.Repne)) != 0;
        bool repne = (i->Flags & InstrFlags.Repne) != 0;
        int kind = i->Sub;
        int srcSeg = i->MemSeg;
        int iterations = 0;
        // Each iteration is one retired instruction (issue 10 item 3): stop between iterations at the budget / timer
        // boundary, with RCX/RSI/RDI updated and RIP at the instruction (SDM Vol. 1 §7.3.9.2).
        int limit = Chunk;
        if (rep)
        {
            ulong before = c.RetiredBefore(i);
            ulong left = c.BudgetEnd > before ? c.BudgetEnd - before : 1;
            if (left < (ulong)limit) limit = (int)left;
        }
        while (true)
        {
            if (rep)
            {
                if ((s.Gpr[1] & amask) == 0) return Done(c, iterations);
                if (iterations == limit) return Interrupted(c, iterations);
            }
            ulong si = s.Gpr[6] & amask, di = s.Gpr[7] & amask;
            switch (kind)
            {
                case Movs:
                    {
                        if (!c.Read(c.Linear(srcSeg, si), size, out ulong v)) return ExecStatus.Event;
                        if (!c.Write(c.Linear(0, di), size, v)) return ExecStatus.Event;
                        c.SetReg(6, a, Step(c, si, delta, a));
                        c.SetReg(7, a, Step(c, di, delta, a));
                        break;
                    }
                case Cmps:
                    {
                        if (!c.Read(c.Linear(srcSeg, si), size, out ulong x)) return ExecStatus.Event;
                        if (!c.Read(c.Linear(0, di), size, out ulong y)) return ExecStatus.Event;
                        LazyFlags.Set(ref s, LazyFlagOp.Sub, size, x - y, x, y);
                        c.SetReg(6, a, Step(c, si, delta, a));
                        c.SetReg(7, a, Step(c, di, delta, a));
                        break;
                    }
                case Scas:
                    {
                        if (!c.Read(c.Linear(0, di), size, out ulong y)) return ExecStatus.Event;
                        ulong x = c.GetReg(0, size);
                        LazyFlags.Set(ref s, LazyFlagOp.Sub, size, x - y, x, y);
                        c.SetReg(7, a, Step(c, di, delta, a));
                        break;
                    }
                case Lods:
                    {
                        if (!c.Read(c.Linear(srcSeg, si), size, out ulong v)) return ExecStatus.Event;
                        c.SetReg(0, size, v);
                        c.SetReg(6, a, Step(c, si, delta, a));
                        break;
                    }
                default:
                    {
                        if (!c.Write(c.Linear(0, di), size, c.GetReg(0, size))) return ExecStatus.Event;
                        c.SetReg(7, a, Step(c, di, delta, a));
                        break;
                    }
            }
            if (!rep) return ExecStatus.Continue;
            c.SetReg(1, a, (s.Gpr[1] & amask) - 1);
            iterations++;
            if (kind == Cmps || kind == Scas)
            {
                bool zf = LazyFlags.Condition(ref s, 4);
                if (repne ? zf : !zf) return Done(c, iterations);
            }
            if (c.StopBlock != 0) return (s.Gpr[1] & amask) == 0 ? Done(c, iterations) : Interrupted(c, iterations); // wrote into code: re-decode
        }
    }

    /// <summary>The last iteration retires the instruction (counted by the dispatch loop); the ones before it count here.</summary>
    private static int Done(Core c, int iterations)
    {
        if (iterations > 1) c.S.InstructionsRetired += (ulong)(iterations - 1);
        return ExecStatus.Continue;
    }

    /// <summary>Stopped between iterations: the iterations done count as retired; the instruction runs again from RIP.</summary>
    private static int Interrupted(Core c, int iterations)
    {
        c.S.InstructionsRetired += (ulong)iterations;
        return ExecStatus.Restart;
    }
}
