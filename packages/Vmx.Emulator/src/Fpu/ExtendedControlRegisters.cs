using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Fpu;

/// <summary>
/// XGETBV and XSETBV (SDM Vol. 1 §13.3, Vol. 2 XGETBV/XSETBV). XSETBV always causes a VM exit in VMX non-root
/// operation (SDM Vol. 3C §26.1.2, exit reason 55) after the faults that have priority over it (§26.1.1:
/// #UD, and #GP(0) at CPL &gt; 0); the hypervisor then applies it with <see cref="TrySet"/>.
/// </summary>
internal static unsafe class ExtendedControlRegisters
{
    /// <summary>XGETBV: ECX = 0 reads XCR0, ECX = 1 reads XCR0 AND XINUSE (CPUID.(EAX=0DH,ECX=1):EAX[2]); else #GP(0).</summary>
    public static int Xgetbv(Core c, Instr* i)
    {
        ref CpuState s = ref c.S;
        if ((s.Cr4 & FpuAccess.Cr4Osxsave) == 0 || (i->Flags & InstrFlags.Lock) != 0)
            return c.RaiseUD();
        FpuAccess.EnsureReset(ref s);
        ulong value;
        switch ((uint)s.Gpr[1])
        {
            case 0: value = s.Fpu.Xcr0; break;
            case 1: value = s.Fpu.Xcr0 & StateArea.InUse(ref s); break;
            default: return c.RaiseGP0();
        }
        s.Gpr[0] = (uint)value;
        s.Gpr[2] = value >> 32;
        return ExecStatus.Continue;
    }

    /// <summary>XSETBV: #UD without CR4.OSXSAVE, #GP(0) at CPL &gt; 0, otherwise the unconditional VM exit.</summary>
    public static int Xsetbv(Core c, Instr* i)
    {
        ref CpuState s = ref c.S;
        if ((s.Cr4 & FpuAccess.Cr4Osxsave) == 0 || (i->Flags & InstrFlags.Lock) != 0)
            return c.RaiseUD();
        if (((s.Ss.AccessRights >> 5) & 3) != 0)
            return c.RaiseGP0();
        return c.RaiseExit(i, BasicExitReason.Xsetbv, 0);
    }

    /// <summary>
    /// The effect of XSETBV with ECX = <paramref name="index"/> and EDX:EAX = <paramref name="value"/> (Vol. 2 XSETBV
    /// "Operation"): false for #GP(0) — ECX other than 0, bit 0 clear, a bit outside the supported set (x87, SSE),
    /// or AVX without SSE. The caller (the hypervisor after the exit) checks CPL and CR4.OSXSAVE as the guest saw them.
    /// </summary>
    public static bool TrySet(ref CpuState s, uint index, ulong value)
    {
        if (index != 0 || (value & 1) == 0 || (value & ~StateArea.SupportedXcr0) != 0 || (value & 6) == 4)
            return false;
        FpuAccess.EnsureReset(ref s);
        s.Fpu.Xcr0 = value;
        return true;
    }
}
