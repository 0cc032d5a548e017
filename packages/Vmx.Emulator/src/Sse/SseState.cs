using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Sse;

/// <summary>
/// Operand access shared by the SSE/SSE2 handlers: XMM registers as <see cref="Vector128{T}"/> views of
/// <see cref="CpuState.Xmm"/>, the source operand (register or memory, with the legacy-SSE 16-byte
/// alignment rule), and the availability checks every SSE instruction makes first.
/// </summary>
internal static unsafe class SseState
{
    /// <summary>CR0.EM (SDM Vol. 3A §2.5).</summary>
    private const ulong Cr0Em = 1UL << 2;
    /// <summary>CR0.TS.</summary>
    private const ulong Cr0Ts = 1UL << 3;
    /// <summary>CR4.OSFXSR: the OS supports FXSAVE/FXRSTOR and SSE.</summary>
    public const ulong Cr4Osfxsr = 1UL << 9;
    /// <summary>CR4.OSXMMEXCPT: unmasked SIMD floating-point exceptions raise #XM (else #UD).</summary>
    public const ulong Cr4Osxmmexcpt = 1UL << 10;

    /// <summary>XMM register <paramref name="n"/> (0..15).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ref Vector128<byte> X(Core c, int n) => ref Unsafe.As<ulong, Vector128<byte>>(ref c.S.XmmLow(n));

    /// <summary>
    /// SDM Vol. 2 §2.3 / table 23-? "Exception conditions for legacy SIMD": #UD if CR0.EM = 1 or CR4.OSFXSR = 0,
    /// #NM if CR0.TS = 1. Returns <see cref="ExecStatus.Continue"/> when the instruction may execute.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Check(Core c)
    {
        ref CpuState s = ref c.S;
        if ((s.Cr0 & (Cr0Em | Cr0Ts)) == 0 && (s.Cr4 & Cr4Osfxsr) != 0)
            return ExecStatus.Continue;
        if ((s.Cr0 & Cr0Em) != 0 || (s.Cr4 & Cr4Osfxsr) == 0)
            return c.RaiseUD();
        return c.RaiseException(ExceptionVector.NM);
    }

    /// <summary>
    /// Reads a 128-bit source: XMM register <paramref name="slot"/> or the memory operand. Legacy SSE
    /// 128-bit memory operands must be 16-byte aligned (#GP(0) otherwise, SDM Vol. 1 §10.4.1.1) unless the
    /// instruction is an explicitly unaligned one (<paramref name="aligned"/> = false).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Source(Core c, Instr* i, byte slot, bool aligned, out Vector128<byte> value)
    {
        if (slot != Instr.MemoryOperand)
        {
            value = X(c, slot);
            return true;
        }
        ulong lin = c.LinearAddress(i);
        if (aligned && (lin & 15) != 0)
        {
            c.RaiseGP0();
            value = default;
            return false;
        }
        if (!c.Read128(lin, out ulong low, out ulong high))
        {
            value = default;
            return false;
        }
        value = Vector128.Create(low, high).AsByte();
        return true;
    }

    /// <summary>Reads a 32- or 64-bit scalar source (low element of an XMM register, or memory) zero-extended into a vector.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool ScalarSource(Core c, Instr* i, byte slot, int size, out Vector128<byte> value)
    {
        if (slot != Instr.MemoryOperand)
        {
            value = X(c, slot);
            return true;
        }
        if (!c.Read(c.LinearAddress(i), size, out ulong v))
        {
            value = default;
            return false;
        }
        value = Vector128.CreateScalar(v).AsByte();
        return true;
    }

    /// <summary>Writes 16 bytes to the memory operand, checking alignment when <paramref name="aligned"/>.</summary>
    public static bool Store(Core c, Instr* i, bool aligned, Vector128<byte> value)
    {
        ulong lin = c.LinearAddress(i);
        if (aligned && (lin & 15) != 0)
        {
            c.RaiseGP0();
            return false;
        }
        var q = value.AsUInt64();
        return c.Write128(lin, q.GetElement(0), q.GetElement(1));
    }
}
