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

        var result = _machine.Run(budget);

        for (int i = 0; i < 16; i++)
            state.Gpr[i] = s.R(i);
        state.Rflags = s.GetRflags();
        state.Rip = s.Rip;
        for (int i = 0; i < 16; i++)
            state.Xmm[i] = new UInt128(s.XmmHigh(i), s.XmmLow(i));
        state.Mxcsr = s.Mxcsr;
        memory.Slice((int)(_base + TestArena.ScratchOffset), TestArena.ScratchSize).CopyTo(state.Scratch);
        memory.Slice((int)(_base + TestArena.StackOffset), TestArena.StackSize).CopyTo(state.Stack);
        return result;
    }

    public void Dispose() => _machine.Dispose();
}
