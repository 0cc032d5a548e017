using Code = Iced.Intel.Code;
using VmmKit.Vmx.Emulator.Engine;
using static VmmKit.Vmx.Emulator.Engine.ControlBits;

namespace VmmKit.Vmx.Emulator.Handlers;

/// <summary>
/// INT n, INT3, INTO, INT1 (SDM Vol. 2A "INT n/INTO/INT3/INT1"), SYSCALL/SYSRET (Vol. 2B, Vol. 3A §5.8.8) and
/// SYSENTER/SYSEXIT (Vol. 2B, Vol. 3A §5.8.7). INT3/INTO exit as software exceptions and INT1 as a privileged
/// software exception when their bit is set in the exception bitmap (SDM Vol. 3C §26.2), with the instruction length.
/// </summary>
internal static unsafe class Interrupts
{
    /// <summary>Kinds in <see cref="Instr.Sub"/>.</summary>
    public const byte IntN = 0, Int3 = 1, Into = 2, Int1 = 3;

    /// <summary>INT imm8 / INT3 / INTO / INT1.</summary>
    public static int Int(Core c, Instr* i)
    {
        ref CpuState s = ref c.S;
        int kind = i->Sub;
        int vector = kind switch { IntN => (byte)i->Imm, Int3 => 3, Into => 4, _ => 1 };
        if (kind == Into)
        {
            if (c.Bitness == 64) return c.RaiseUD();
            if (!LazyFlags.Condition(ref s, 0)) return ExecStatus.Continue; // OF clear: nothing happens
        }
        // Virtual-8086 mode with IOPL < 3: INT n is #GP(0) (no VME).
        if (kind == IntN && (s.Rflags & RflagsBits.VM) != 0 && (s.Rflags & RflagsBits.IOPL) != RflagsBits.IOPL) return c.RaiseGP0();
        if (kind != IntN && (c.ExceptionBitmap & (1u << vector)) != 0)
        {
            c.RaiseException(vector);
            c.Event.InterruptionType = kind == Int1 ? 5 : 6;
            c.Event.InstructionLength = i->Length;
            return ExecStatus.Event;
        }
        s.Rip = i->NextIp;
        if (!c.TryDeliver(vector, false, 0, software: kind != Int1))
        {
            s.Rip = i->Ip; // the fault (#GP, #NP, #SS, #TS, #PF) is reported at the INT instruction
            return ExecStatus.Event;
        }
        return ExecStatus.Jump;
    }

    private static void FlatCode(ref SegmentRegister seg, ushort selector, int dpl, bool longMode)
    {
        seg.Selector = selector;
        seg.Base = 0;
        seg.Limit = 0xFFFF_FFFF;
        // Type 11 (execute/read, accessed), S, DPL, P, L or D, G.
        seg.AccessRights = 0xB | 0x10 | ((uint)dpl << 5) | 0x80 | (longMode ? 1u << 13 : 1u << 14) | (1u << 15);
    }

    private static void FlatStack(ref SegmentRegister seg, ushort selector, int dpl)
    {
        seg.Selector = selector;
        seg.Base = 0;
        seg.Limit = 0xFFFF_FFFF;
        seg.AccessRights = 0x3 | 0x10 | ((uint)dpl << 5) | 0x80 | (1u << 14) | (1u << 15);
    }

    /// <summary>SYSCALL (64-bit mode with EFER.SCE; Intel processors #UD in compatibility and legacy mode).</summary>
    public static int Syscall(Core c, Instr* i)
    {
        ref CpuState s = ref c.S;
        if (c.Bitness != 64 || (s.Efer & EferSce) == 0) return c.RaiseUD();
        ulong flags = s.GetRflags();
        s.Gpr[1] = i->NextIp;
        s.Gpr[11] = flags & ~RflagsBits.RF;
        ushort sel = (ushort)(s.Star >> 32);
        FlatCode(ref s.Cs, (ushort)(sel & 0xFFFC), 0, longMode: true);
        FlatStack(ref s.Ss, (ushort)(sel + 8), 0);
        s.SetRflags(flags & ~(s.Sfmask | RflagsBits.RF));
        s.Rip = s.Lstar;
        c.RefreshMode();
        return ExecStatus.Jump;
    }

    /// <summary>SYSRET (to 64-bit code with REX.W, else to compatibility mode).</summary>
    public static int Sysret(Core c, Instr* i)
    {
        ref CpuState s = ref c.S;
        if (c.Bitness != 64 || (s.Efer & EferSce) == 0) return c.RaiseUD();
        if (!c.IsCpl0) return c.RaiseGP0();
        bool to64 = (Code)i->Code == Code.Sysretq;
        ulong rip = s.Gpr[1];
        if (to64 && !DescriptorTables.IsCanonical(rip)) return c.RaiseGP0();
        ushort sel = (ushort)(s.Star >> 48);
        FlatCode(ref s.Cs, (ushort)((to64 ? sel + 16 : sel) | 3), 3, to64);
        FlatStack(ref s.Ss, (ushort)((sel + 8) | 3), 3);
        s.SetRflags((s.Gpr[11] & 0x3C_7FD7) | RflagsBits.Reserved1);
        s.Rip = to64 ? rip : (uint)rip;
        c.RefreshMode();
        return ExecStatus.Jump;
    }

    /// <summary>SYSENTER: to CPL 0 at IA32_SYSENTER_CS:EIP with IA32_SYSENTER_ESP (64-bit code in IA-32e mode).</summary>
    public static int Sysenter(Core c, Instr* i)
    {
        ref CpuState s = ref c.S;
        if ((s.Cr0 & Cr0Pe) == 0 || (s.SysenterCs & 0xFFFC) == 0) return c.RaiseGP0();
        bool lm = (s.Efer & EferLma) != 0;
        ushort sel = (ushort)s.SysenterCs;
        s.SetRflags(s.GetRflags() & ~(RflagsBits.VM | RflagsBits.IF | RflagsBits.RF));
        FlatCode(ref s.Cs, (ushort)(sel & 0xFFFC), 0, lm);
        FlatStack(ref s.Ss, (ushort)((sel + 8) & 0xFFFC), 0);
        s.Rip = lm ? s.SysenterEip : (uint)s.SysenterEip;
        s.Gpr[4] = lm ? s.SysenterEsp : (uint)s.SysenterEsp;
        c.RefreshMode();
        return ExecStatus.Jump;
    }

    /// <summary>SYSEXIT: to CPL 3 at EDX/RDX with ECX/RCX as the stack (64-bit code with REX.W).</summary>
    public static int Sysexit(Core c, Instr* i)
    {
        ref CpuState s = ref c.S;
        if ((s.Cr0 & Cr0Pe) == 0 || (s.SysenterCs & 0xFFFC) == 0 || !c.IsCpl0) return c.RaiseGP0();
        bool to64 = (Code)i->Code == Code.Sysexitq;
        if (to64 && (!DescriptorTables.IsCanonical(s.Gpr[2]) || !DescriptorTables.IsCanonical(s.Gpr[1]))) return c.RaiseGP0();
        ushort sel = (ushort)s.SysenterCs;
        FlatCode(ref s.Cs, (ushort)((sel + (to64 ? 32 : 16)) | 3), 3, to64);
        FlatStack(ref s.Ss, (ushort)((sel + (to64 ? 40 : 24)) | 3), 3);
        s.Rip = to64 ? s.Gpr[2] : (uint)s.Gpr[2];
        s.Gpr[4] = to64 ? s.Gpr[1] : (uint)s.Gpr[1];
        c.RefreshMode();
        return ExecStatus.Jump;
    }
}
