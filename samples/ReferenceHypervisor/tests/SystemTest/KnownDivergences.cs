namespace VmmKit.ReferenceHypervisor.Tests.SystemTest;

/// <summary>
/// KnownDivergences.txt (beside the tests): the test kernels (and <c>linux-boot</c>) that vmmkit-hv does not yet run
/// like the oracle. A listed entry must still diverge, so fixing the emulator forces its removal from the list.
/// </summary>
public static class KnownDivergences
{
    /// <summary>The file's path in the repository.</summary>
    public static string FilePath { get; } = Path.Combine(GuestBuild.RepoRoot, "samples", "ReferenceHypervisor", "tests", "KnownDivergences.txt");

    private static readonly Lazy<HashSet<string>> Entries = new(() =>
        File.ReadAllLines(FilePath)
            .Select(l => (l.IndexOf('#') is var i and >= 0 ? l[..i] : l).Trim())
            .Where(l => l.Length > 0)
            .ToHashSet(StringComparer.Ordinal));

    /// <summary>Whether <paramref name="name"/> is listed.</summary>
    public static bool Contains(string name) => Entries.Value.Contains(name);

    /// <summary>A short line-by-line comparison: the first differing line with context, and both transcripts' tails.</summary>
    public static string Diff(string expected, string actual, string expectedName = "qemu", string actualName = "vmmkit-hv")
    {
        string[] e = expected.Split('\n'), a = actual.Split('\n');
        int i = 0;
        while (i < e.Length && i < a.Length && e[i] == a[i])
            i++;
        var sb = new System.Text.StringBuilder();
        sb.AppendLine($"first difference at line {i + 1} (identical before it):");
        for (int k = Math.Max(0, i - 2); k < i; k++)
            sb.AppendLine($"  = {e[k]}");
        for (int k = i; k < Math.Min(e.Length, i + 4); k++)
            sb.AppendLine($"  {expectedName}: {e[k]}");
        for (int k = i; k < Math.Min(a.Length, i + 4); k++)
            sb.AppendLine($"  {actualName}: {a[k]}");
        return sb.ToString();
    }
}
