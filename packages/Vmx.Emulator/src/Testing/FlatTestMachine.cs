using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Testing;

/// <summary>Why <see cref="FlatTestMachine.Run"/> stopped.</summary>
internal enum FlatStopReason
{
    /// <summary>HLT executed (RIP points at the HLT).</summary>
    Halt,
    /// <summary>The instruction budget ran out.</summary>
    BudgetExhausted,
    /// <summary>A guest exception (see <see cref="FlatRunResult.Vector"/>); RIP points at the faulting instruction.</summary>
    Exception,
    /// <summary>Another VM exit (CPUID, I/O, RDMSR, VMCALL, EPT violation ...), see <see cref="FlatRunResult.ExitReason"/>.</summary>
    Exit,
}

/// <summary>Result of a flat run.</summary>
internal readonly record struct FlatRunResult(FlatStopReason Reason, int Vector, uint ErrorCode, uint ExitReason, ulong Qualification, ulong GuestPhysical, ulong InstructionsExecuted);

/// <summary>
/// "Flat test mode": runs code without a VMCS. Paging off, linear == guest-physical, flat segments
/// (base 0, limit 4 GiB) in a 16-, 32- or 64-bit code segment; memory is guest-physical RAM
/// [0, size). Set <see cref="State"/> (GPRs, RIP, RFLAGS via SetRflags, XMM, MXCSR), write code and
/// data with <see cref="Memory"/>, <see cref="Run"/> until HLT or a budget, read the state back.
/// Every exception or exit stops the run (nothing is delivered through an IDT).
/// </summary>
internal sealed unsafe class FlatTestMachine : IDisposable
{
    private readonly NativeRamPageSource _ram;

    /// <summary>Creates a machine with <paramref name="memoryBytes"/> of RAM at guest-physical 0.</summary>
    public FlatTestMachine(ulong memoryBytes, int bitness = 64)
    {
        _ram = new NativeRamPageSource(memoryBytes);
        Core = new Core(_ram);
        SetBitness(bitness);
    }

    /// <summary>The engine (for tests that need more than the state).</summary>
    public Core Core { get; }

    /// <summary>Architectural state.</summary>
    public ref CpuState State => ref Core.S;

    /// <summary>Guest-physical RAM.</summary>
    public Span<byte> Memory => _ram.Span;

    /// <summary>Host address of guest-physical 0 (for bulk copies).</summary>
    public byte* MemoryBase => _ram.Base;

    /// <summary>Code-segment bitness.</summary>
    public int Bitness => Core.Bitness;

    /// <summary>Switches the flat segments to a 16-, 32- or 64-bit code segment (stack size follows).</summary>
    public void SetBitness(int bitness)
    {
        ref CpuState s = ref Core.S;
        // Access rights in VMCS format (SDM Vol. 3C table 24-2): type, S, DPL, P, L (13), D/B (14), G (15).
        uint data = 0x3 | 0x10 | 0x80 | (bitness == 16 ? 0u : (1u << 14) | (1u << 15));
        uint code = 0xB | 0x10 | 0x80 | (bitness == 64 ? 1u << 13 : bitness == 32 ? 1u << 14 : 0) | (bitness == 16 ? 0u : 1u << 15);
        for (int k = 0; k < 6; k++)
        {
            ref SegmentRegister seg = ref s.Segment(k);
            seg.Base = 0;
            seg.Limit = bitness == 16 ? 0xFFFF : 0xFFFF_FFFF;
            seg.AccessRights = k == 1 ? code : data;
            seg.Selector = (ushort)(k == 1 ? 0x08 : 0x10);
        }
        s.Cr0 = bitness == 16 ? 0 : 1u; // PE (paging off)
        s.Efer = bitness == 64 ? (1UL << 8) | (1UL << 10) : 0; // LME | LMA
        s.Cr4 = bitness == 64 ? 1UL << 5 : 0; // PAE (required by LMA; paging stays off in flat mode)
        Core.RefreshMode();
        if (bitness == 64)
        {
            // Long mode requires paging architecturally; flat test mode deliberately keeps linear == physical.
            s.Cr0 &= ~(1UL << 31);
        }
        Core.FlushAll();
    }

    /// <summary>Runs until HLT, an exception or exit, or <paramref name="budget"/> instructions.</summary>
    public FlatRunResult Run(ulong budget = 100_000_000)
    {
        ulong start = Core.S.InstructionsRetired;
        Core.BeginRun();
        bool exhausted = Core.Execute(budget);
        ulong done = Core.S.InstructionsRetired - start;
        if (exhausted) return new FlatRunResult(FlatStopReason.BudgetExhausted, 0, 0, 0, 0, 0, done);
        PendingEvent e = Core.Event;
        if (e.Kind == EventKind.Exception)
        {
            return new FlatRunResult(FlatStopReason.Exception, e.Vector, e.ErrorCode, 0, 0, 0, done);
        }
        if (e.ExitReason == BasicExitReason.Hlt)
        {
            return new FlatRunResult(FlatStopReason.Halt, 0, 0, e.ExitReason, 0, 0, done);
        }
        return new FlatRunResult(FlatStopReason.Exit, 0, 0, e.ExitReason, e.Qualification, e.GuestPhysical, done);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        Core.Dispose();
        _ram.Dispose();
    }
}
