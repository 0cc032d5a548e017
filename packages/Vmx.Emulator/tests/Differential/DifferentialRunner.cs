using System.Text;
using VmmKit.Vmx.Emulator.Testing;

namespace VmmKit.Vmx.Emulator.Tests.Differential;

/// <summary>
/// Runs generated cases on the host CPU and in the emulator and collects mismatches, each with its seed,
/// its listing and the initial state.
/// </summary>
internal sealed class DifferentialRunner : IDisposable
{
    private readonly TestArena _arena = new();
    private readonly NativeExecutor _native;
    private readonly EmulatorExecutor _emulator;
    private readonly SequenceGenerator _generator;

    public DifferentialRunner()
    {
        _native = new NativeExecutor(_arena);
        _emulator = new EmulatorExecutor(_arena.Base);
        _generator = new SequenceGenerator(_arena.Base);
    }

    public ulong ArenaBase => _arena.Base;

    public SequenceGenerator Generator => _generator;

    public EmulatorExecutor Emulator => _emulator;

    /// <summary>A directed case: <paramref name="instructions"/> from a random state (seeded), adjusted by <paramref name="setup"/>.</summary>
    public DifferentialCase Directed(int seed, List<Iced.Intel.Instruction> instructions, Action<CpuSnapshot>? setup = null, ulong undefinedFlags = 0)
    {
        var state = _generator.InitialState(seed);
        setup?.Invoke(state);
        return new DifferentialCase
        {
            Seed = seed,
            CodeAddress = _arena.Base + TestArena.CodeOffset,
            Code = _generator.Assemble(instructions),
            Initial = state,
            UndefinedFlags = undefinedFlags,
        };
    }

    /// <summary>Runs one case; returns null when native and emulator agree, else a report.</summary>
    public string? RunCase(int seed, InstructionMix mix, int maxLength = 10)
    {
        var c = _generator.Generate(seed, mix, maxLength);
        return Check(c);
    }

    public string? Check(DifferentialCase c)
    {
        var native = c.Initial.Clone();
        _native.Run(c.Code, native);
        var emulated = c.Initial.Clone();
        FlatRunResult result;
        try
        {
            result = _emulator.Run(c.Code, emulated);
        }
        catch (Exception e)
        {
            return c.Describe($"  host exception in the emulator: {e}\n");
        }
        if (result.Reason != FlatStopReason.Halt)
            return c.Describe($"  emulator stopped with {result.Reason} vector {result.Vector} exit {result.ExitReason} gpa {result.GuestPhysical:X} at rip {emulated.Rip:X}\n");
        if (emulated.Rip != native.Rip)
            return c.Describe($"  emulator halted at {emulated.Rip:X}, native ended at {native.Rip:X}\n");
        string? diff = CpuSnapshot.Compare(native, emulated, c.UndefinedFlags);
        if (diff is null)
            return null;
        // The host may have pushed a signal frame below RSP: confirm with a second native run.
        var again = c.Initial.Clone();
        _native.Run(c.Code, again);
        if (CpuSnapshot.Compare(native, again, 0) is not null)
            return CpuSnapshot.Compare(again, emulated, c.UndefinedFlags) is null ? null : c.Describe(diff);
        return c.Describe(diff);
    }

    /// <summary>Runs seeds [first, first + count) and returns (failures, report of the first few).</summary>
    public (int Failures, string Report) RunMany(int first, int count, InstructionMix mix, int maxReports = 5)
    {
        var sb = new StringBuilder();
        int failures = 0;
        for (int seed = first; seed < first + count; seed++)
        {
            string? r = RunCase(seed, mix);
            if (r is null)
                continue;
            if (failures++ < maxReports)
                sb.AppendLine(r);
        }
        return (failures, sb.ToString());
    }

    public void Dispose()
    {
        _emulator.Dispose();
        _arena.Dispose();
    }
}
