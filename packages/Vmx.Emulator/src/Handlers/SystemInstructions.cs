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
        if (c.HltExiting) return c.RaiseExit(i, BasicExitReason.Hlt, 0);
        c.Event = default;
        c.Event.Kind = EventKind.Halt;
        c.Event.InstructionLength = i->Length;
        return ExecStatus.Event;
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

    // MSRs the processor itself implements when the MSR bitmap lets an access through (SDM Vol. 4, table 2-2).
    private const uint Ia32Tsc = 0x10, Ia32SysenterCs = 0x174, Ia32SysenterEsp = 0x175, Ia32SysenterEip = 0x176, Ia32Pat = 0x277;
    private const uint Ia32Efer = 0xC000_0080, Ia32Star = 0xC000_0081, Ia32Lstar = 0xC000_0082, Ia32Cstar = 0xC000_0083, Ia32Fmask = 0xC000_0084;
    private const uint Ia32FsBase = 0xC000_0100, Ia32GsBase = 0xC000_0101, Ia32KernelGsBase = 0xC000_0102, Ia32TscAux = 0xC000_0103;

    private static bool Canonical(ulong v) => (ulong)(((long)v << 16) >> 16) == v;

    private static int ReadMsr(Core c, Instr* i, uint msr)
    {
        ref CpuState s = ref c.S;
        ulong v;
        switch (msr)
        {
            case Ia32Tsc: v = c.GuestTsc(i); break; // SDM Vol. 3C §26.3: RDMSR of IA32_TSC is offset and scaled like RDTSC
            case Ia32SysenterCs: v = s.SysenterCs; break;
            case Ia32SysenterEsp: v = s.SysenterEsp; break;
            case Ia32SysenterEip: v = s.SysenterEip; break;
            case Ia32Pat: v = s.Pat; break;
            case Ia32Efer: v = s.Efer; break;
            case Ia32Star: v = s.Star; break;
            case Ia32Lstar: v = s.Lstar; break;
            case Ia32Cstar: v = s.Cstar; break;
            case Ia32Fmask: v = s.Sfmask; break;
            case Ia32FsBase: v = s.Fs.Base; break;
            case Ia32GsBase: v = s.Gs.Base; break;
            case Ia32KernelGsBase: v = s.KernelGsBase; break;
            case Ia32TscAux: v = s.TscAux; break;
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
            case Ia32Tsc: c.TscWriteAdjust = v - (c.GuestTsc(i) - c.TscWriteAdjust); break;
            case Ia32SysenterCs: s.SysenterCs = (ushort)v; break;
            case Ia32SysenterEsp: if (!Canonical(v)) return c.RaiseGP0(); s.SysenterEsp = v; break;
            case Ia32SysenterEip: if (!Canonical(v)) return c.RaiseGP0(); s.SysenterEip = v; break;
            case Ia32Pat:
                // SDM Vol. 3A §13.12.2: each entry must be a valid memory type (0, 1, 4, 5, 6, 7).
                for (int k = 0; k < 8; k++)
                {
                    ulong type = (v >> (8 * k)) & 0xFF;
                    if (type is 2 or 3 or > 7) return c.RaiseGP0();
                }
                s.Pat = v;
                break;
            case Ia32Efer:
                {
                    // SDM Vol. 3A §2.2.1: reserved bits #GP; LME cannot change while paging is on; LMA is read-only.
                    if ((v & ~(ControlBits.EferWritable | ControlBits.EferLma)) != 0) return c.RaiseGP0();
                    if ((s.Cr0 & ControlBits.Cr0Pg) != 0 && ((v ^ s.Efer) & ControlBits.EferLme) != 0) return c.RaiseGP0();
                    ulong efer = (v & ControlBits.EferWritable) | (s.Efer & ControlBits.EferLma);
                    bool nxChanged = ((efer ^ s.Efer) & ControlBits.EferNxe) != 0;
                    s.Efer = efer;
                    if (nxChanged) c.FlushTlb();
                    break;
                }
            case Ia32Star: s.Star = v; break;
            case Ia32Lstar: if (!Canonical(v)) return c.RaiseGP0(); s.Lstar = v; break;
            case Ia32Cstar: if (!Canonical(v)) return c.RaiseGP0(); s.Cstar = v; break;
            case Ia32Fmask: s.Sfmask = (uint)v; break;
            case Ia32FsBase: if (!Canonical(v)) return c.RaiseGP0(); s.Fs.Base = v; c.RefreshMode(); break;
            case Ia32GsBase: if (!Canonical(v)) return c.RaiseGP0(); s.Gs.Base = v; c.RefreshMode(); break;
            case Ia32KernelGsBase: if (!Canonical(v)) return c.RaiseGP0(); s.KernelGsBase = v; break;
            case Ia32TscAux: if ((v >> 32) != 0) return c.RaiseGP0(); s.TscAux = v; break;
            default: return c.RaiseGP0();
        }
        return ExecStatus.Continue;
    }

    /// <summary>RDTSC: TSC = instructions retired + TSC offset (deterministic), or an exit with RDTSC exiting.</summary>
    public static int Rdtsc(Core c, Instr* i)
    {
        if ((c.S.Cr4 & ControlBits.Cr4Tsd) != 0 && !c.IsCpl0) return c.RaiseGP0(); // SDM RDTSC: CR4.TSD restricts it to CPL 0
        if (c.RdtscExiting) return c.RaiseExit(i, BasicExitReason.Rdtsc, 0);
        ulong tsc = c.GuestTsc(i);
        c.SetReg(0, 4, (uint)tsc);
        c.SetReg(2, 4, tsc >> 32);
        return ExecStatus.Continue;
    }

    /// <summary>
    /// The I/O permission bitmap check (SDM Vol. 1 §18.5.2): TR must hold a 32/64-bit TSS whose limit covers the map
    /// base at offset 66H and both bytes holding the access's bits; every bit for ports port..port+size-1 must be clear.
    /// <paramref name="faulted"/> is true when reading the TSS itself raised #PF/EPT (already recorded).
    /// </summary>
    private static bool IoPermitted(Core c, ushort port, int size, out bool faulted)
    {
        faulted = false;
        ref CpuState s = ref c.S;
        uint type = s.Tr.AccessRights & 0xF;
        if ((type != 9 && type != 11) || s.Tr.Limit < 0x67) return false;       // 16-bit or no TSS: #GP(0)
        // Both reads are implicit supervisor accesses to the TSS (SDM Vol. 3A §4.6), two bytes each.
        bool saved = c.ImplicitSupervisor;
        c.ImplicitSupervisor = true;
        bool ok = c.Read((s.Tr.Base + 0x66) & c.LinearMask, 2, out ulong mapBase);   // I/O map base at 66H
        uint offset = (uint)mapBase + (uint)(port >> 3);
        bool inLimit = offset + 1 <= s.Tr.Limit;                                      // both bytes inside the limit
        ulong bits = 0;
        if (ok && inLimit) ok = c.Read((s.Tr.Base + offset) & c.LinearMask, 2, out bits);
        c.ImplicitSupervisor = saved;
        if (!ok) { faulted = true; return false; }
        uint mask = ((1u << size) - 1) << (port & 7);
        return inLimit && ((uint)bits & mask) == 0;
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
        // SDM Vol. 1 §18.5: with CPL > IOPL in protected mode the TSS I/O permission bitmap decides.
        if ((c.S.Cr0 & 1) != 0 && (ulong)(c.S.Cs.Selector & 3) > ((c.S.Rflags >> 12) & 3))
        {
            if (!IoPermitted(c, port, size, out bool faulted)) return faulted ? ExecStatus.Event : c.RaiseGP0();
        }
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
