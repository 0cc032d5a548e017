using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;

namespace VmmKit.GrantTable;

/// <summary>
/// The grant-table hypercalls' <see cref="System.Diagnostics.Metrics"/> instruments, on the meter
/// <see cref="MeterName"/> (shared by every <see cref="GrantTableHypercalls{TCaller}"/> in the process): one
/// measurement per <c>GNTTABOP_copy</c> or <c>GNTTABOP_map_grant_ref</c> entry processed. Tag values are constant
/// strings, so recording allocates nothing; with no listener the cost is one <c>Enabled</c> test.
/// </summary>
public static class GrantTableMetrics
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "VmmKit.GrantTable";

    /// <summary>Counter of <c>gnttab_copy</c> entries, tagged <c>status</c>: <c>okay</c> (GNTST_okay) or <c>error</c> (any other GNTST_*).</summary>
    public const string Copies = "vmmkit.granttable.copies";

    /// <summary>Counter of <c>gnttab_map_grant_ref</c> entries, tagged <c>status</c>: <c>okay</c> or <c>error</c>.</summary>
    public const string Maps = "vmmkit.granttable.maps";

    private static readonly Meter Meter = new(MeterName);
    private static readonly Counter<long> CopyCounter = Meter.CreateCounter<long>(Copies, "{entry}", "Grant copy entries processed, by status");
    private static readonly Counter<long> MapCounter = Meter.CreateCounter<long>(Maps, "{entry}", "Grant map entries processed, by status");

    /// <summary>Records <paramref name="okay"/> copy entries that ended with GNTST_okay and <paramref name="errors"/> that did not.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void RecordCopies(int okay, int errors)
    {
        if (CopyCounter.Enabled)
        {
            if (okay != 0)
                CopyCounter.Add(okay, new KeyValuePair<string, object?>("status", "okay"));
            if (errors != 0)
                CopyCounter.Add(errors, new KeyValuePair<string, object?>("status", "error"));
        }
    }

    /// <summary>Records one map entry that ended with <paramref name="status"/> (a GNTST_* value).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void RecordMap(short status)
    {
        if (MapCounter.Enabled)
            MapCounter.Add(1, new KeyValuePair<string, object?>("status", status == 0 ? "okay" : "error"));
    }
}
