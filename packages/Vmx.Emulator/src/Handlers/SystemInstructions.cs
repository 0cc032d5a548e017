using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Handlers;

/// <summary>Instructions that exit or read processor state: CPUID, HLT, RDTSC, I/O, RDMSR/WRMSR, VMCALL.</summary>
internal static unsafe class SystemInstructions
{
    /// <summary>CPUID: unconditional VM exit (SDM Vol. 3C §26.1.2).</summary>
    public static int Cpuid(Core c, Instr* i) => c.RaiseExit(i, BasicExitReason.Cpuid, 0);

    /// <summary>HLT: exits (HLT exiting; without it there is no interrupt source yet to wake the processor).</summary>
    public static int Hlt(Core c, Instr* i)
    {
        if ((c.S.Cr0 & 1) != 0 && (c.S.Cs.Selector & 3) != 0) return c.RaiseGP0();
        return c.RaiseExit(i, BasicExitReason.Hlt, 0);
    }

    /// <summary>VMCALL: unconditional VM exit.</summary>
    public static int Vmcall(Core c, Instr* i) => c.RaiseExit(i, BasicExitReason.Vmcall, 0);

    /// <summary>RDMSR (Sub = 0) / WRMSR (Sub = 1): exit to the hypervisor.</summary>
    public static int Msr(Core c, Instr* i)
    {
        if ((c.S.Cr0 & 1) != 0 && (c.S.Cs.Selector & 3) != 0) return c.RaiseGP0();
        return c.RaiseExit(i, i->Sub == 0 ? BasicExitReason.Rdmsr : BasicExitReason.Wrmsr, 0);
    }

    /// <summary>RDTSC: TSC = instructions retired + TSC offset (deterministic), or an exit with RDTSC exiting.</summary>
    public static int Rdtsc(Core c, Instr* i)
    {
        if (c.RdtscExiting) return c.RaiseExit(i, BasicExitReason.Rdtsc, 0);
        ulong tsc = c.RetiredBefore(i) + c.S.TscOffset;
        c.SetReg(0, 4, (uint)tsc);
        c.SetReg(2, 4, tsc >> 32);
        return ExecStatus.Continue;
    }

    /// <summary>
    /// IN/OUT/INS/OUTS. Sub bit 0 = IN, bit 1 = string, bit 2 = immediate port. Exit qualification per
    /// SDM Vol. 3C §28.2.1 table 28-5: size-1 (2:0), direction IN (3), string (4), REP (5), immediate (6), port (31:16).
    /// </summary>
    public static int Io(Core c, Instr* i)
    {
        bool isIn = (i->Sub & 1) != 0, str = (i->Sub & 2) != 0, imm = (i->Sub & 4) != 0;
        int size = str ? i->MemSize : isIn ? i->OpSize : i->Op1Size;
        ushort port = imm ? (ushort)i->Imm : (ushort)c.S.Gpr[2];
        // SDM Vol. 1 §18.5: CPL > IOPL in protected mode needs the TSS I/O bitmap; not modelled: #GP.
        if ((c.S.Cr0 & 1) != 0 && (ulong)(c.S.Cs.Selector & 3) > ((c.S.Rflags >> 12) & 3)) return c.RaiseGP0();
        if (c.IoExits(port, size))
        {
            ulong q = (ulong)(uint)(size - 1) | (isIn ? 8UL : 0) | (str ? 16UL : 0)
                | ((i->Flags & InstrFlags.Rep) != 0 ? 32UL : 0) | (imm ? 64UL : 0) | ((ulong)port << 16);
            return c.RaiseExit(i, BasicExitReason.IoInstruction, q);
        }
        // No exit and no device: reads float high, writes are dropped.
        if (!str)
        {
            if (isIn) c.SetReg(0, size, ulong.MaxValue);
            return ExecStatus.Continue;
        }
        return c.RaiseExit(i, BasicExitReason.IoInstruction, (ulong)(uint)(size - 1) | (isIn ? 8UL : 0) | 16UL | ((ulong)port << 16));
    }
}
