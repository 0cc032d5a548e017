using Xunit.Abstractions;

namespace VmmKit.Vmx.Emulator.Tests.Differential;

/// <summary>
/// The differential tester: random instruction sequences run on the host CPU (the oracle) and in the
/// emulator from the same state; registers, flags (minus SDM-undefined ones), XMM, MXCSR and memory must
/// agree. Failures print the seed, the listing and the initial state; rerun one seed with
/// <see cref="DifferentialRunner.RunCase"/>.
/// </summary>
public sealed class DifferentialTests
{
    private readonly ITestOutputHelper _output;

    public DifferentialTests(ITestOutputHelper output) => _output = output;

    [Fact]
    public void Integer_sequences_match_the_host_cpu() => Run(1_000_000, 60_000, InstructionMix.Integer);

    [Fact]
    public void Sse_sequences_match_the_host_cpu() => Run(2_000_000, 25_000, InstructionMix.Sse);

    [Fact]
    public void Mixed_sequences_match_the_host_cpu() => Run(3_000_000, 20_000, InstructionMix.All);

    [Fact]
    public void X87_sequences_match_the_host_cpu() => Run(4_000_000, 20_000, InstructionMix.X87 | InstructionMix.Integer);

    [Fact]
    public void Mmx_sequences_match_the_host_cpu() => Run(5_000_000, 15_000, InstructionMix.Mmx | InstructionMix.Integer);

    [Fact]
    public void Bit_manipulation_sequences_match_the_host_cpu()
    {
        Assert.NotEmpty(InstructionForms.BitCodes);
        Run(6_000_000, 20_000, InstructionMix.Bits | InstructionMix.Integer);
    }

    [Fact]
    public void Sse3_to_sse42_sequences_match_the_host_cpu()
    {
        Assert.NotEmpty(InstructionForms.Sse4Codes);
        Run(7_000_000, 20_000, InstructionMix.Sse4 | InstructionMix.Sse);
    }

    private void Run(int firstSeed, int count, InstructionMix mix)
    {
        using var runner = new DifferentialRunner();
        var (failures, report) = runner.RunMany(firstSeed, count, mix);
        _output.WriteLine($"{count} cases from seed {firstSeed}: {failures} mismatches");
        Assert.True(failures == 0, $"{failures} of {count} cases mismatch; first ones:\n{report}");
    }
}
