using System.Text;
using Iced.Intel;

namespace VmmKit.Vmx.Emulator.Tests.Differential;

/// <summary>One generated test: code (assembled for the arena's code address), the initial state, and the
/// RFLAGS bits the SDM leaves undefined at its end.</summary>
internal sealed class DifferentialCase
{
    public required int Seed { get; init; }
    public required ulong CodeAddress { get; init; }
    public required byte[] Code { get; init; }
    public required CpuSnapshot Initial { get; init; }
    public required ulong UndefinedFlags { get; init; }

    /// <summary>The code as Iced disassembles it (what both sides actually run).</summary>
    public string Listing()
    {
        var sb = new StringBuilder();
        var decoder = Iced.Intel.Decoder.Create(64, new ByteArrayCodeReader(Code), CodeAddress);
        var formatter = new NasmFormatter();
        formatter.Options.FirstOperandCharIndex = 10;
        var output = new StringOutput();
        while (decoder.IP < CodeAddress + (ulong)Code.Length)
        {
            ulong ip = decoder.IP;
            decoder.Decode(out var instruction);
            formatter.Format(instruction, output);
            sb.Append($"    {ip:X8}  {output.ToStringAndReset()}\n");
        }
        return sb.ToString();
    }

    public string Describe(string mismatch) =>
        $"seed {Seed}:\n{Listing()}initial state:\n{Initial.Describe()}mismatch:\n{mismatch}";
}
