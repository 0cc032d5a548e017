using System.Runtime.CompilerServices;
using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Fpu;

/// <summary>
/// Checks every x87, MMX and state-management instruction makes before it executes (SDM Vol. 3A §2.5 table 2-2
/// "Action taken by x87 FPU instructions for different combinations of EM, MP and TS", Vol. 1 §8.7 "Handling x87 FPU
/// exceptions in software"), and the ModR/M byte of register forms.
/// </summary>
internal static unsafe class FpuAccess
{
    /// <summary>CR0.MP.</summary>
    public const ulong Cr0Mp = 1UL << 1;
    /// <summary>CR0.EM.</summary>
    public const ulong Cr0Em = 1UL << 2;
    /// <summary>CR0.TS.</summary>
    public const ulong Cr0Ts = 1UL << 3;
    /// <summary>CR0.NE: x87 errors raise #MF (else the external FERR#/IGNNE# path).</summary>
    public const ulong Cr0Ne = 1UL << 5;
    /// <summary>CR4.OSXSAVE.</summary>
    public const ulong Cr4Osxsave = 1UL << 18;
    /// <summary>FSW.ES, the error summary: an unmasked exception is pending (SDM Vol. 1 §8.1.3.? figure 8-4).</summary>
    public const ushort FswEs = 1 << 7;

    /// <summary>
    /// An x87 instruction: #NM when CR0.EM or CR0.TS is set; then, for a waiting instruction, #MF when an
    /// unmasked exception is pending and CR0.NE = 1. With CR0.NE = 0 the pending exception is reported through
    /// FERR# outside the processor, which this processor does not model: it continues as with IGNNE# asserted
    /// (SDM Vol. 1 §8.7.1 / Vol. 3A §2.5 CR0.NE).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int CheckX87(Core c, bool waiting)
    {
        ref CpuState s = ref c.S;
        if ((s.Cr0 & (Cr0Em | Cr0Ts)) != 0)
            return c.RaiseException(ExceptionVector.NM);
        EnsureReset(ref s);
        if (waiting && (s.Fpu.Fsw & FswEs) != 0 && (s.Cr0 & Cr0Ne) != 0)
            return c.RaiseException(ExceptionVector.MF);
        return ExecStatus.Continue;
    }

    /// <summary>An MMX instruction: #UD when CR0.EM = 1, #NM when CR0.TS = 1, #MF for a pending x87 exception (SDM Vol. 1 §9.5.? table 9-?, §12? "MMX instructions ... exceptions").</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int CheckMmx(Core c)
    {
        ref CpuState s = ref c.S;
        if ((s.Cr0 & Cr0Em) != 0)
            return c.RaiseUD();
        if ((s.Cr0 & Cr0Ts) != 0)
            return c.RaiseException(ExceptionVector.NM);
        EnsureReset(ref s);
        if ((s.Fpu.Fsw & FswEs) != 0 && (s.Cr0 & Cr0Ne) != 0)
            return c.RaiseException(ExceptionVector.MF);
        return ExecStatus.Continue;
    }

    /// <summary>
    /// XCR0 bit 0 is 1 in every reachable state (SDM Vol. 1 §13.3); a zero marks an <see cref="FpuState"/> that was
    /// never reset (a freshly cleared <see cref="CpuState"/>), which gets the FNINIT state (the initial vCPU FPU state
    /// a hypervisor gives, e.g. Xen's FCW_DEFAULT 037FH) on first use.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void EnsureReset(ref CpuState s)
    {
        if (s.Fpu.Xcr0 == 0)
            s.Fpu.Reset();
    }

    /// <summary>
    /// The ModR/M byte (bits 7:0) and the low three bits of the escape opcode (bits 10:8) of <paramref name="i"/>,
    /// i.e. the 11-bit FOP for x87 (SDM Vol. 1 §8.1.8) — which also names ST(i) and the MMX registers. Read once
    /// from the code bytes and cached in <see cref="Instr.Imm2"/> (bit 63 marks it valid; no x87 or MMX form has a
    /// second immediate). Returns -1 when the code cannot be read (event raised).
    /// </summary>
    public static int OpcodeAndModRm(Core c, Instr* i)
    {
        if ((i->Imm2 & (1UL << 63)) != 0)
            return (int)(i->Imm2 & 0x7FF);
        ulong lin = c.Linear(1, i->Ip);
        int k = 0;
        byte b = 0;
        bool escape = false;
        int opcode = 0;
        for (; k < i->Length; k++)
        {
            if (!Fetch(c, lin + (ulong)k, out b))
                return -1;
            if (b is 0x66 or 0x67 or 0xF0 or 0xF2 or 0xF3 or 0x26 or 0x2E or 0x36 or 0x3E or 0x64 or 0x65 or 0x9B)
                continue;
            if ((i->Flags & InstrFlags.Long) != 0 && (b & 0xF0) == 0x40)
                continue;
            break;
        }
        if (b == 0x0F)
        {
            escape = true;
            if (!Fetch(c, lin + (ulong)++k, out b))
                return -1;
            if (b is 0x38 or 0x3A && !Fetch(c, lin + (ulong)++k, out b))
                return -1;
        }
        opcode = escape ? 0 : b & 7;
        if (!Fetch(c, lin + (ulong)(k + 1), out byte modrm))
            return -1;
        int v = (opcode << 8) | modrm;
        i->Imm2 = (1UL << 63) | (uint)v;
        return v;
    }

    private static bool Fetch(Core c, ulong lin, out byte b)
    {
        byte* p = c.HostPointer(lin & c.LinearMask, MemoryAccess.Execute);
        b = p == null ? (byte)0 : *p;
        return p != null;
    }
}
