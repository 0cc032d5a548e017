using System.Runtime.CompilerServices;

namespace VmmKit.TestSupport;

// The loop every layout-oracle test runs: evaluate C expressions with gcc against Xen's headers (x86-64, or i386 for
// the compat ABI) and compare them with what the C# mirror says, naming every mismatch.
public static partial class XenAbiLayout
{
    /// <summary>The byte offset of <paramref name="field"/> inside <paramref name="s"/> (the C# side of an offsetof).</summary>
    public static long Offset<T, TField>(ref T s, ref TField field) =>
        Unsafe.ByteOffset(ref Unsafe.As<T, byte>(ref s), ref Unsafe.As<TField, byte>(ref field));

    /// <summary>
    /// Asserts, for each C type, <c>sizeof(CType) == Size</c> and <c>offsetof(CType, Member) == Offset</c> for every
    /// listed member, as gcc compiles them after <paramref name="headers"/> for <paramref name="bits"/> = 64 (x86-64) or
    /// 32 (i386, Xen's compat ABI). Fails listing every mismatch.
    /// </summary>
    public static void AssertLayout(IEnumerable<string> headers, int bits, params (string CType, long Size, (string Member, long Offset)[] Fields)[] types)
    {
        var checks = new List<(string, long)>();
        foreach (var (cType, size, fields) in types)
        {
            checks.Add(($"sizeof({cType})", size));
            foreach (var (member, offset) in fields)
                checks.Add(($"offsetof({cType}, {member})", offset));
        }

        AssertValues(headers, bits, checks);
    }

    /// <summary>
    /// Asserts that each C integer constant expression (a constant, a <c>sizeof</c>, an <c>offsetof</c>) has the expected
    /// value as gcc compiles it after <paramref name="headers"/> for <paramref name="bits"/> = 64 (x86-64) or 32 (i386).
    /// Fails listing every mismatch.
    /// </summary>
    public static void AssertValues(IEnumerable<string> headers, int bits, IReadOnlyList<(string Expression, long Expected)> checks)
    {
        if (bits is not (64 or 32))
            throw new ArgumentOutOfRangeException(nameof(bits), bits, "64 (x86-64) or 32 (i386)");
        if (checks.Count == 0)
            throw new ArgumentException("nothing to check", nameof(checks));

        var expressions = checks.Select(c => c.Expression).ToList();
        IReadOnlyList<long> values = bits == 64 ? Evaluate(headers, expressions) : I386Layout.Evaluate(headers, expressions);
        var wrong = new List<string>();
        for (int i = 0; i < checks.Count; i++)
        {
            if (checks[i].Expected != values[i])
                wrong.Add($"{checks[i].Expression} [{bits}-bit]: C# {checks[i].Expected}, gcc {values[i]}");
        }

        Xunit.Assert.True(wrong.Count == 0, string.Join("\n", wrong));
    }
}
