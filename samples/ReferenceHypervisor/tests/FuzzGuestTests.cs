using System.Text.RegularExpressions;
using VmmKit.Hypercall;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// The seeded hypercall fuzzer (samples/guests/fuzz) against the hypervisor, bounded for CI: every seed must end in
/// the guest's own poweroff (no host exception, no crash of the domain, no hang), every result must be a
/// non-negative value or a Xen errno, and a second domain in the same machine must finish its work. Set
/// VMMKIT_FUZZ_SEED=N (and VMMKIT_FUZZ_STEPS) to replay one seed.
/// </summary>
public partial class FuzzGuestTests
{
    private const int Steps = 3000;

    public static TheoryData<uint> Seeds()
    {
        var data = new TheoryData<uint>();
        if (uint.TryParse(Environment.GetEnvironmentVariable("VMMKIT_FUZZ_SEED"), out uint only))
        {
            data.Add(only);
            return data;
        }

        foreach (uint s in new uint[] { 1, 2, 3, 0xC0FFEE })
            data.Add(s);
        return data;
    }

    private static int StepCount => int.TryParse(Environment.GetEnvironmentVariable("VMMKIT_FUZZ_STEPS"), out int n) ? n : Steps;

    private static (Domain Fuzz, Domain Other) Run(uint seed, int steps)
    {
        using var machine = new Machine(64 << 20, ProcessorProviders.CreateDefault()) { MaxInstructionsPerVcpu = 500_000_000 };
        byte[] fuzz = File.ReadAllBytes(GuestBuild.Path("fuzz.elf"));
        byte[] workload = File.ReadAllBytes(GuestBuild.Path("workload.elf"));
        Assert.True(machine.TryCreateDomain(new DomainConfig("fuzz", fuzz, 16 << 20, $"seed={seed} steps={steps}"), out var f, out string error), error);
        Assert.True(machine.TryCreateDomain(new DomainConfig("workload", workload, 16 << 20, "iterations=1"), out var w, out error), error);
        HostileGuestTests.RunBounded(machine, TimeSpan.FromSeconds(300), $"fuzz seed {seed}");
        return (f!, w!);
    }

    [Theory]
    [MemberData(nameof(Seeds))]
    public void Random_hypercalls_never_hurt_the_host_or_the_other_domain(uint seed)
    {
        int steps = StepCount;
        var (f, w) = Run(seed, steps);
        string t = f.Console.Transcript;
        string replay = $"fuzz seed {seed} (replay: VMMKIT_FUZZ_SEED={seed} VMMKIT_FUZZ_STEPS={steps})";
        Assert.True(f.State == DomainState.Shutdown, $"{replay}: the domain was crashed:\n{f.CrashReport}\n{Tail(t)}");
        Assert.True(f.ShutdownReason == ShutdownReason.Poweroff, $"{replay}: shutdown reason {f.ShutdownReason}\n{Tail(t)}");
        Assert.True(t.EndsWith("fuzz: done\n", StringComparison.Ordinal), $"{replay}: no summary\n{Tail(t)}");
        Assert.True(t.Contains("fuzz: weird: 0\n", StringComparison.Ordinal), $"{replay}: results that are neither >= 0 nor a Xen errno\n{Tail(t)}");
        Assert.True(w.State == DomainState.Shutdown && w.ShutdownReason == ShutdownReason.Poweroff && w.Console.Transcript.Contains("workload checksum: "),
            $"{replay}: the other domain did not finish: {w.State}\n{w.CrashReport}");
    }

    [Fact]
    public void The_cli_ends_a_fuzz_run_with_a_documented_exit_status()
    {
        var (code, stdout, stderr) = GuestBootTests.RunCli("boot", GuestBuild.Path("fuzz.elf"), "--cmdline", "seed=11 steps=1000");
        Assert.True(code == Cli.ExitCodes.Poweroff, $"fuzz seed 11: status {code}\n{stderr}");
        Assert.EndsWith("fuzz: done\n", stdout);
        Assert.DoesNotContain("Unhandled exception", stderr);
    }

    [Fact]
    public void A_seed_replays_the_same_calls_and_results()
    {
        string Hash(Domain d) => HashLine().Match(d.Console.Transcript) is { Success: true } m ? m.Value : "no hash:\n" + Tail(d.Console.Transcript);
        var (a, _) = Run(7, 500);
        var (b, _) = Run(7, 500);
        Assert.Equal(Hash(a), Hash(b));
        Assert.StartsWith("fuzz: hash 0x", Hash(a));
    }

    private static string Tail(string s) => s.Length <= 2000 ? s : s[^2000..];

    [GeneratedRegex("fuzz: hash 0x[0-9a-f]{8}")]
    private static partial Regex HashLine();
}
