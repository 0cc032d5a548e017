using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;

namespace VmmKit.TestSupport;

/// <summary>
/// The i386 half of the ABI oracle: the layout a 32-bit caller (Xen's compat ABI) sees. It
/// compiles the expressions with <c>gcc -m32 -ffreestanding -S</c> against Xen's public headers
/// and reads the constants from the assembly, so it needs gcc but not the i386 C library
/// (gcc-multilib is not installed by ./test.sh). With <c>tools: true</c> it also defines
/// <c>__XEN_TOOLS__</c>, for constants Xen only exposes to the toolstack.
/// </summary>
public static partial class I386Layout
{
    private static readonly Dictionary<string, long[]> Cache = new();
    private static readonly Lock CacheLock = new();

    public static long[] Evaluate(IEnumerable<string> headers, IReadOnlyList<string> expressions, int bits = 32, bool tools = false)
    {
        var src = new StringBuilder();
        src.AppendLine($"/* -m{bits} */");
        if (tools)
            src.AppendLine("#define __XEN_TOOLS__ 1");
        src.AppendLine("#include <stdint.h>");
        src.AppendLine("#include <stddef.h>");
        foreach (var h in headers)
            src.AppendLine($"#include <{h}>");
        for (int i = 0; i < expressions.Count; i++)
            src.AppendLine($"const int vmmkit_v{i} = (int)({expressions[i]});");
        string program = src.ToString();
        lock (CacheLock)
        {
            if (Cache.TryGetValue(program, out var cached))
                return cached;
        }

        string gcc = RequiredTool.Require("gcc", "gcc");
        RequiredTool.RequireFile("/usr/include/xen/xen.h", "libxen-dev");
        string dir = Path.Combine(Path.GetTempPath(), "vmmkit-abi-i386", Guid.NewGuid().ToString("n"));
        Directory.CreateDirectory(dir);
        string c = Path.Combine(dir, "layout.c");
        File.WriteAllText(c, program);
        var psi = new ProcessStartInfo(gcc, $"-m{bits} -ffreestanding -O0 -D__XEN_INTERFACE_VERSION__={XenAbiLayout.InterfaceVersion} -S -o - \"{c}\"")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        using var p = Process.Start(psi)!;
        var stderrTask = p.StandardError.ReadToEndAsync();
        string asm = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"gcc -m32 failed:\n{stderrTask.Result}");
        Directory.Delete(dir, recursive: true);

        var values = new long[expressions.Count];
        var found = new bool[expressions.Count];
        foreach (Match m in ConstantPattern().Matches(asm))
        {
            int i = int.Parse(m.Groups[1].Value);
            values[i] = m.Groups[2].Success ? long.Parse(m.Groups[2].Value) : 0;
            found[i] = true;
        }
        if (found.Contains(false))
            throw new InvalidOperationException("gcc -m32 output lacks some constants:\n" + asm);
        lock (CacheLock)
            Cache[program] = values;
        return values;
    }

    [GeneratedRegex(@"vmmkit_v(\d+):\s*(?:\.long\s+(-?\d+)|\.zero\s+4)")]
    private static partial Regex ConstantPattern();
}
