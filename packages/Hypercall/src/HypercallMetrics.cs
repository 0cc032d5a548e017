using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;
using System.Text;

namespace VmmKit.Hypercall;

/// <summary>
/// The dispatcher's <see cref="System.Diagnostics.Metrics"/> instruments, on the meter <see cref="MeterName"/> (shared by
/// every <see cref="HypercallDispatcher{TCaller}"/> in the process): one measurement per
/// <see cref="HypercallDispatcher{TCaller}.Dispatch"/>, i.e. per VMCALL exit (a continuation re-entering counts
/// again, as Xen's per-hypercall perf counters do; the entries of a multicall are not counted separately).
/// Tag values are strings cached per number, so recording allocates nothing, listened to or not.
/// </summary>
public static class HypercallMetrics
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "VmmKit.Hypercall";

    /// <summary>
    /// Counter of hypercalls, tagged <c>op</c> with Xen's name without <c>__HYPERVISOR_</c> (<c>xen_version</c>,
    /// <c>memory_op</c>, ...), the decimal number for an unnamed number below 64, or <c>invalid</c> at or above it.
    /// </summary>
    public const string Calls = "vmmkit.hypercall.calls";

    /// <summary>Counter of hypercalls that completed with a negative result, tagged <c>op</c> and <c>errno</c> (<c>ENOSYS</c>, <c>EFAULT</c>, ...).</summary>
    public const string Errors = "vmmkit.hypercall.errors";

    private const int ErrnoTableSize = 128;

    private static readonly Meter Meter = new(MeterName);
    private static readonly Counter<long> CallCounter = Meter.CreateCounter<long>(Calls, "{call}", "Hypercalls dispatched, by number");
    private static readonly Counter<long> ErrorCounter = Meter.CreateCounter<long>(Errors, "{call}", "Hypercalls that returned a negative errno, by number and errno");
    private static readonly string[] OpNames = BuildOpNames();
    private static readonly string[] ErrnoNames = BuildErrnoNames();

    /// <summary>Records one dispatched call: <paramref name="result"/> is the handler's result (0 for a preempted call).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Record(ulong op, long result)
    {
        if (CallCounter.Enabled)
            CallCounter.Add(1, new KeyValuePair<string, object?>("op", OpName(op)));
        if (result < 0 && ErrorCounter.Enabled)
            ErrorCounter.Add(1, new KeyValuePair<string, object?>("op", OpName(op)), new KeyValuePair<string, object?>("errno", ErrnoName(result)));
    }

    /// <summary>The <c>op</c> tag of a hypercall number.</summary>
    internal static string OpName(ulong op) => op < (ulong)OpNames.Length ? OpNames[op] : "invalid";

    /// <summary>The <c>errno</c> tag of a negative result: the <see cref="XenErrno"/> name, the number if unnamed, or <c>other</c>.</summary>
    internal static string ErrnoName(long result) => result < 0 && -result < ErrnoTableSize ? ErrnoNames[-result] : "other";

    // hypercall-defs.c / xen.h: __HYPERVISOR_xen_version etc.; the enum's names are these in Pascal case.
    private static string[] BuildOpNames()
    {
        var names = new string[HypercallDispatcher<object>.TableSize];
        for (int i = 0; i < names.Length; i++)
        {
            string? name = Enum.GetName((HypercallNumber)i);
            names[i] = name is null ? i.ToString(System.Globalization.CultureInfo.InvariantCulture) : SnakeCase(name);
        }
        return names;
    }

    private static string[] BuildErrnoNames()
    {
        var names = new string[ErrnoTableSize];
        for (int i = 0; i < names.Length; i++)
            names[i] = Enum.GetName((XenErrno)i) ?? i.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return names;
    }

    /// <summary><c>XenVersion</c> → <c>xen_version</c>, <c>Arch5</c> → <c>arch_5</c>.</summary>
    private static string SnakeCase(string name)
    {
        var sb = new StringBuilder(name.Length + 4);
        for (int i = 0; i < name.Length; i++)
        {
            char c = name[i];
            bool boundary = i > 0 && (char.IsUpper(c) || (char.IsDigit(c) && !char.IsDigit(name[i - 1])));
            if (boundary)
                sb.Append('_');
            sb.Append(char.ToLowerInvariant(c));
        }
        return sb.ToString();
    }
}
