using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;

namespace VmmKit.TestSupport;

/// <summary>
/// The ABI oracle of docs/architecture.md ("Sources of truth and oracles"): compiles a small C program with gcc against Xen's public
/// headers (libxen-dev, /usr/include/xen) and returns the integer values of C expressions such as
/// <c>sizeof(struct evtchn_alloc_unbound)</c> or <c>offsetof(struct shared_info, evtchn_mask)</c>.
/// Every C# struct that mirrors a Xen struct is checked against it.
/// </summary>
public static partial class XenAbiLayout
{
    /// <summary>The interface version every guest and layout check is built for.</summary>
    public const string InterfaceVersion = "0x00040e00";

    private static readonly Dictionary<string, IReadOnlyList<long>> Cache = new();
    private static readonly Lock CacheLock = new();

    /// <summary>
    /// Evaluates each C integer constant expression after including <paramref name="headers"/>
    /// (for example <c>"xen/xen.h", "xen/event_channel.h"</c>). The program is built for x86-64
    /// (<paramref name="bits"/> = 64) or i386 (32, needs gcc-multilib).
    /// </summary>
    public static IReadOnlyList<long> Evaluate(IEnumerable<string> headers, IReadOnlyList<string> expressions, int bits = 64)
        => Evaluate(headers, expressions, [], bits);

    /// <summary>
    /// As <see cref="Evaluate(IEnumerable{string}, IReadOnlyList{string}, int)"/>, with each of <paramref name="defines"/>
    /// defined before the headers (for example <c>__XEN_TOOLS__</c>, which domctl.h and sysctl.h require).
    /// </summary>
    public static IReadOnlyList<long> Evaluate(IEnumerable<string> headers, IReadOnlyList<string> expressions, IEnumerable<string> defines, int bits = 64)
    {
        var src = new StringBuilder();
        foreach (var d in defines)
            src.AppendLine($"#define {d} 1");
        src.AppendLine("#include <stdint.h>");
        src.AppendLine("#include <stddef.h>");
        src.AppendLine("#include <stdio.h>");
        foreach (var h in headers)
            src.AppendLine($"#include <{h}>");
        src.AppendLine("int main(void) {");
        foreach (var e in expressions)
            src.AppendLine($"  printf(\"%lld\\n\", (long long)({e}));");
        src.AppendLine("  return 0;\n}");
        string program = src.ToString();
        string key = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(bits + "\n" + program)))[..24];
        lock (CacheLock)
        {
            if (Cache.TryGetValue(key, out var cached))
                return cached;
        }

        RequiredTool.Require("gcc", "gcc");
        RequiredTool.RequireFile("/usr/include/xen/xen.h", "libxen-dev");
        string dir = Path.Combine(Path.GetTempPath(), "vmmkit-abi", key);
        Directory.CreateDirectory(dir);
        string c = Path.Combine(dir, "layout.c"), exe = Path.Combine(dir, "layout");
        File.WriteAllText(c, program);
        Run("gcc", $"-m{bits} -D__XEN_INTERFACE_VERSION__={InterfaceVersion} -o \"{exe}\" \"{c}\"");
        string output = Run(exe, "");
        var values = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(long.Parse).ToArray();
        if (values.Length != expressions.Count)
            throw new InvalidOperationException($"layout program printed {values.Length} values for {expressions.Count} expressions");
        lock (CacheLock)
            Cache[key] = values;
        return values;
    }

    /// <summary>Evaluates one expression; see <see cref="Evaluate(IEnumerable{string}, IReadOnlyList{string}, int)"/>.</summary>
    public static long Value(string header, string expression, int bits = 64) => Evaluate([header], [expression], bits)[0];

    /// <summary>sizeof(<paramref name="cType"/>) under the given header.</summary>
    public static long SizeOf(string header, string cType, int bits = 64) => Value(header, $"sizeof({cType})", bits);

    /// <summary>offsetof(<paramref name="cType"/>, <paramref name="member"/>) under the given header.</summary>
    public static long OffsetOf(string header, string cType, string member, int bits = 64) => Value(header, $"offsetof({cType}, {member})", bits);

    private static string Run(string file, string args)
    {
        var psi = new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {file}");
        string stdout = p.StandardOutput.ReadToEnd();
        string stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"{file} {args} failed ({p.ExitCode}):\n{stderr}{stdout}");
        return stdout;
    }
}
