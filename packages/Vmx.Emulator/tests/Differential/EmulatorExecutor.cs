using VmmKit.Vmx.Emulator.Engine;
using VmmKit.Vmx.Emulator.Testing;

namespace VmmKit.Vmx.Emulator.Tests.Differential;

/// <summary>
/// Runs a generated sequence in the emulator's flat test mode (paging off, linear == guest-physical):
/// the guest RAM covers the arena's addresses, so the sequence, its scratch data and its stack sit at
/// the same addresses as natively; the sequence is followed by HLT instead of the jump back to the stub.
/// </summary>
internal sealed unsafe class EmulatorExecutor : IDisposable
{
    private readonly ulong _base;
    private readonly FlatTestMachine _machine;

    public EmulatorExecutor(ulong arenaBase, int bitness = 64)
    {
        _base = arenaBase;
        _machine = new FlatTestMachine(arenaBase + TestArena.Size, bitness);
        // An OS that uses SSE sets CR4.OSFXSR and CR4.OSXMMEXCPT (SDM Vol. 3A §13.1.3); without them SSE raises #UD.
        _machine.State.Cr4 |= (1UL << 9) | (1UL << 10);
        // CR0.NE: x87 errors are reported as #MF (every OS since the 486 sets it); CR4.OSXSAVE enables XSAVE/XGETBV.
        _machine.State.Cr0 |= 1UL << 5;
        _machine.State.Cr4 |= 1UL << 18;
    }

    public FlatTestMachine Machine => _machine;

    /// <summary>Loads <paramref name="state"/>, runs <paramref name="code"/> + HLT, stores the final state back.</summary>
    public FlatRunResult Run(ReadOnlySpan<byte> code, CpuSnapshot state, ulong budget = 1_000_000)
    {
        var memory = _machine.Memory;
        var codeSpan = memory.Slice((int)(_base + TestArena.CodeOffset), TestArena.CodeCapacity);
        code.CopyTo(codeSpan);
        codeSpan[code.Length] = 0xF4; // HLT
        state.Scratch.CopyTo(memory.Slice((int)(_base + TestArena.ScratchOffset), TestArena.ScratchSize));
        state.Stack.CopyTo(memory.Slice((int)(_base + TestArena.StackOffset), TestArena.StackSize));

        ref CpuState s = ref _machine.State;
        for (int i = 0; i < 16; i++)
            s.R(i) = state.Gpr[i];
        s.Rip = _base + TestArena.CodeOffset;
        s.SetRflags(state.Rflags);
        for (int i = 0; i < 16; i++)
        {
            s.XmmLow(i) = (ulong)state.Xmm[i];
            s.XmmHigh(i) = (ulong)(state.Xmm[i] >> 64);
        }
        s.Mxcsr = state.Mxcsr;
        LoadX87(ref s.Fpu, state.Fx);

        var result = _machine.Run(budget);

        for (int i = 0; i < 16; i++)
            state.Gpr[i] = s.R(i);
        state.Rflags = s.GetRflags();
        state.Rip = s.Rip;
        for (int i = 0; i < 16; i++)
            state.Xmm[i] = new UInt128(s.XmmHigh(i), s.XmmLow(i));
        state.Mxcsr = s.Mxcsr;
        StoreX87(ref s.Fpu, state.Fx);
        memory.Slice((int)(_base + TestArena.ScratchOffset), TestArena.ScratchSize).CopyTo(state.Scratch);
        memory.Slice((int)(_base + TestArena.StackOffset), TestArena.StackSize).CopyTo(state.Stack);
        return result;
    }

    /// <summary>x87/MMX state from an FXSAVE image: registers there are in stack order ST(0)..ST(7), the emulator keeps
    /// them by physical number (SDM Vol. 1 §8.1.2, §10.5.1).</summary>
    public static void LoadX87(ref FpuState f, byte[] fx)
    {
        f.Fcw = BitConverter.ToUInt16(fx, 0);
        f.Fsw = BitConverter.ToUInt16(fx, 2);
        f.Ftw = fx[4];
        f.Fop = BitConverter.ToUInt16(fx, 6);
        f.Fip = BitConverter.ToUInt64(fx, 8);
        f.Fdp = BitConverter.ToUInt64(fx, 16);
        f.Fcs = f.Fds = 0;
        f.Xcr0 = 3;
        int top = (f.Fsw >> 11) & 7;
        for (int k = 0; k < 8; k++)
        {
            int p = (top + k) & 7;
            f.Mantissa(p) = BitConverter.ToUInt64(fx, 32 + 16 * k);
            f.Exponent(p) = BitConverter.ToUInt16(fx, 40 + 16 * k);
        }
    }

    /// <summary>The emulator's x87/MMX state as an FXSAVE64 image (x87 fields only).</summary>
    public static void StoreX87(ref FpuState f, byte[] fx)
    {
        Array.Clear(fx);
        BitConverter.TryWriteBytes(fx.AsSpan(0), f.Fcw);
        BitConverter.TryWriteBytes(fx.AsSpan(2), f.Fsw);
        fx[4] = f.Ftw;
        BitConverter.TryWriteBytes(fx.AsSpan(6), f.Fop);
        BitConverter.TryWriteBytes(fx.AsSpan(8), f.Fip);
        BitConverter.TryWriteBytes(fx.AsSpan(16), f.Fdp);
        int top = (f.Fsw >> 11) & 7;
        for (int k = 0; k < 8; k++)
        {
            int p = (top + k) & 7;
            BitConverter.TryWriteBytes(fx.AsSpan(32 + 16 * k), f.Mantissa(p));
            BitConverter.TryWriteBytes(fx.AsSpan(40 + 16 * k), f.Exponent(p));
        }
    }

    public void Dispose() => _machine.Dispose();
}
