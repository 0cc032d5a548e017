using System.Runtime.Intrinsics;
using Iced.Intel;
using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Sse;

/// <summary>
/// SSE4.1 DPPS and DPPD, computed as the SDM's "Operation" spells them — each product and each sum one rounded
/// single- or double-precision operation — by the host's MULSS/ADDSS (MULSD/ADDSD) thunks under the guest's MXCSR,
/// so every intermediate rounding, DAZ/FTZ and NaN rule is the hardware's; products the mask leaves out are +0.0
/// and raise nothing. Exception flags are the OR of the steps; an unmasked one raises #XM (#UD without
/// CR4.OSXMMEXCPT) and writes nothing, as in <see cref="FloatHandlers"/>.
/// Which NaN a lane gets is the host part's too. The SDM's sum, ((t0 + t1) + (t2 + t3)), is what AMD parts broadcast.
/// Intel parts (measured on a Xeon) sum each destination lane in its own operand order, and an SSE addition of two
/// NaNs returns the first: DPPS lane 0 ((t1 + t0) + (t3 + t2)), lane 1 ((t0 + t1) + (t2 + t3)), lane 2
/// ((t3 + t2) + (t1 + t0)), lane 3 ((t2 + t3) + (t0 + t1)); DPPD lane 0 (t0 + t1), lane 1 (t1 + t0). Addition
/// commutes otherwise, so only a NaN sum can differ between lanes, and only then are the lanes summed one by one.
/// </summary>
internal static unsafe class DotProduct
{
    /// <summary>True on an Intel host: a NaN sum is taken lane by lane, in that part's operand orders.</summary>
    private static readonly bool PerLaneOrder = System.Runtime.Intrinsics.X86.X86Base.IsSupported
        && System.Runtime.Intrinsics.X86.X86Base.CpuId(0, 0) is { Ebx: 0x756E6547, Edx: 0x49656E69, Ecx: 0x6C65746E };   // "GenuineIntel"

    /// <summary>DPPS (Sub = 4) / DPPD (Sub = 8) xmm, xmm/m128, imm8.</summary>
    public static int Execute(Core c, Instr* i)
    {
        int st = SseState.Check(c);
        if (st != ExecStatus.Continue)
            return st;
        if (!FloatThunks.Available)
            return c.RaiseUD();
        if (!SseState.Source(c, i, i->Op1, aligned: true, out var sv))
            return ExecStatus.Event;
        var dv = SseState.X(c, i->Op0);
        uint guest = c.S.Mxcsr;
        uint flags = 0;
        int imm = (byte)i->Imm;
        Vector128<byte> result;
        if (i->Sub == 4)
        {
            int mul = Thunk(Code.Mulss_xmm_xmmm32), add = Thunk(Code.Addss_xmm_xmmm32);
            var d = dv.AsUInt32();
            var s = sv.AsUInt32();
            uint* t = stackalloc uint[4];
            for (int k = 0; k < 4; k++)
                t[k] = (imm >> (4 + k) & 1) != 0 ? Run(mul, d.GetElement(k), s.GetElement(k), guest, ref flags) : 0;
            uint t2 = Run(add, t[0], t[1], guest, ref flags);
            uint t3 = Run(add, t[2], t[3], guest, ref flags);
            uint t4 = Run(add, t2, t3, guest, ref flags);
            uint l0 = t4, l1 = t4, l2 = t4, l3 = t4;
            if (PerLaneOrder && (t4 & 0x7FFFFFFF) > 0x7F800000)
            {
                uint unused = 0;   // the same additions raise the same flags in any order
                l0 = Run(add, Run(add, t[1], t[0], guest, ref unused), Run(add, t[3], t[2], guest, ref unused), guest, ref unused);
                l2 = Run(add, Run(add, t[3], t[2], guest, ref unused), Run(add, t[1], t[0], guest, ref unused), guest, ref unused);
                l3 = Run(add, t3, t2, guest, ref unused);
            }
            result = Vector128.Create((imm & 1) != 0 ? l0 : 0, (imm & 2) != 0 ? l1 : 0, (imm & 4) != 0 ? l2 : 0, (imm & 8) != 0 ? l3 : 0).AsByte();
        }
        else
        {
            int mul = Thunk(Code.Mulsd_xmm_xmmm64), add = Thunk(Code.Addsd_xmm_xmmm64);
            var d = dv.AsUInt64();
            var s = sv.AsUInt64();
            ulong t0 = (imm & 0x10) != 0 ? Run(mul, d.GetElement(0), s.GetElement(0), guest, ref flags) : 0;
            ulong t1 = (imm & 0x20) != 0 ? Run(mul, d.GetElement(1), s.GetElement(1), guest, ref flags) : 0;
            ulong t2 = Run(add, t0, t1, guest, ref flags);
            ulong l1 = t2;
            if (PerLaneOrder && (t2 & 0x7FFFFFFFFFFFFFFF) > 0x7FF0000000000000)
            {
                uint unused = 0;
                l1 = Run(add, t1, t0, guest, ref unused);
            }
            result = Vector128.Create((imm & 1) != 0 ? t2 : 0, (imm & 2) != 0 ? l1 : 0).AsByte();
        }
        uint unmasked = flags & ~(guest >> 7) & 0x3F;
        c.S.Mxcsr = guest | flags;
        if (unmasked != 0)
            return (c.S.Cr4 & SseState.Cr4Osxmmexcpt) != 0 ? c.RaiseException(ExceptionVector.XM) : c.RaiseUD();
        SseState.X(c, i->Op0) = result;
        return ExecStatus.Continue;
    }

    /// <summary>The thunk index of a registered scalar form (its handler-table Sub).</summary>
    private static int Thunk(Code code) => HandlerTable.Entries[(int)code].Sub;

    /// <summary>One scalar operation with every exception masked; its flags are added to <paramref name="flags"/>.</summary>
    private static uint Run(int index, uint a, uint b, uint mxcsr, ref uint flags) => (uint)Run(index, (ulong)a, b, mxcsr, ref flags);

    private static ulong Run(int index, ulong a, ulong b, uint mxcsr, ref uint flags)
    {
        FloatFrame f = default;
        f.A0 = a;
        f.B0 = b;
        f.Mxcsr = (mxcsr & ~0x3Fu) | 0x1F80;
        FloatThunks.Entries[index](&f);
        flags |= f.Mxcsr & 0x3F;
        return f.A0;
    }
}
