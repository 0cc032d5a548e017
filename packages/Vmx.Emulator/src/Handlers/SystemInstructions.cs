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
        ref CpuState s = ref c.S;
        uint msr = (uint)s.Gpr[1];
        bool write = i->Sub == 1;
        if (c.MsrExits(msr, write)) return c.RaiseExit(i, write ? BasicExitReason.Wrmsr : BasicExitReason.Rdmsr, 0);
        return write ? WriteMsr(c, i, msr, ((ulong)(uint)s.Gpr[2] << 32) | (uint)s.Gpr[0]) : ReadMsr(c, i, msr);
    }

    // MSRs the processor itself implements when the MSR bitmap lets an access through (SDM Vol. 4).
    private const uint Ia32Tsc = 0x10, Ia32Efer = 0xC000_0080, Ia32FsBase = 0xC000_0100, Ia32GsBase = 0xC000_0101, Ia32KernelGsBase = 0xC000_0102;

    private static int ReadMsr(Core c, Instr* i, uint msr)
    {
        ref CpuState s = ref c.S;
        ulong v;
        switch (msr)
        {
            case Ia32Tsc: v = c.RetiredBefore(i) + s.TscOffset; break;
            case Ia32Efer: v = s.Efer; break;
            case Ia32FsBase: v = s.Fs.Base; break;
            case Ia32GsBase: v = s.Gs.Base; break;
            case Ia32KernelGsBase: v = s.KernelGsBase; break;
            default: return c.RaiseGP0();
        }
        s.Gpr[0] = (uint)v;
        s.Gpr[2] = v >> 32;
        return ExecStatus.Continue;
    }

    private static int WriteMsr(Core c, Instr* i, uint msr, ulong v)
    {
        ref CpuState s = ref c.S;
        switch (msr)
        {
            case Ia32Tsc: s.TscOffset = v - c.RetiredBefore(i); break;
            case Ia32FsBase: s.Fs.Base = v; c.RefreshMode(); break;
            case Ia32GsBase: s.Gs.Base = v; c.RefreshMode(); break;
            case Ia32KernelGsBase: s.KernelGsBase = v; break;
            default: return c.RaiseGP0(); // EFER changes mode: the hypervisor handles it through an exit
        }
        return ExecStatus.Continue;
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
