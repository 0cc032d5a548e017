namespace VmmKit.Vmx.Emulator.Tests.Differential;

/// <summary>
/// The host CPU's feature flags from /proc/cpuinfo (Linux's names), so the generator only emits what the oracle can
/// run. Reading them must work: without it the tester cannot decide what to compare, and fails.
/// </summary>
internal static class HostFeatures
{
    private static readonly HashSet<string> Flags = Read();

    /// <summary>True when the host reports <paramref name="flag"/> (e.g. "bmi2", "sse4_2").</summary>
    public static bool Has(string flag) => Flags.Contains(flag);

    private static HashSet<string> Read()
    {
        foreach (string line in File.ReadLines("/proc/cpuinfo"))
        {
            if (line.StartsWith("flags", StringComparison.Ordinal))
                return line[(line.IndexOf(':') + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries).ToHashSet();
        }
        throw new InvalidOperationException("/proc/cpuinfo has no flags line: the differential oracle cannot tell what the host CPU runs");
    }
}
