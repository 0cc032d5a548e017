using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;

namespace VmmKit.EventChannel;

/// <summary>
/// The event-channel hypervisor side's <see cref="System.Diagnostics.Metrics"/> instruments, on the meter
/// <see cref="MeterName"/> (shared by every <see cref="EventChannelHypervisor"/> in the process). Tag values are
/// constant strings, so recording allocates nothing; with no listener the cost is one <c>Enabled</c> test.
/// </summary>
public static class EventChannelMetrics
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "VmmKit.EventChannel";

    /// <summary>
    /// Counter of events sent, tagged <c>kind</c>: <c>interdomain</c> and <c>ipi</c> (an <c>EVTCHNOP_send</c> that made
    /// a port pending), <c>unbound</c> (an <c>EVTCHNOP_send</c> on an unbound port, dropped as Xen does) and <c>virq</c>
    /// (a VIRQ the hypervisor raised on a bound port).
    /// </summary>
    public const string Sends = "vmmkit.eventchannel.sends";

    /// <summary>
    /// Counter of notifications: upcalls raised to a vCPU because <c>evtchn_upcall_pending</c> went from 0 to 1 (Xen's
    /// <c>vcpu_mark_events_pending</c>); events that find it already set notify nobody.
    /// </summary>
    public const string Notifications = "vmmkit.eventchannel.notifications";

    internal const string Interdomain = "interdomain", Ipi = "ipi", Unbound = "unbound", Virq = "virq";

    private static readonly Meter Meter = new(MeterName);
    private static readonly Counter<long> SendCounter = Meter.CreateCounter<long>(Sends, "{event}", "Events sent, by kind of port");
    private static readonly Counter<long> NotificationCounter = Meter.CreateCounter<long>(Notifications, "{upcall}", "Upcalls raised to vCPUs");

    /// <summary>Records one event sent on a port of <paramref name="kind"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void RecordSend(string kind)
    {
        if (SendCounter.Enabled)
            SendCounter.Add(1, new KeyValuePair<string, object?>("kind", kind));
    }

    /// <summary>Records one upcall raised.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void RecordNotification()
    {
        if (NotificationCounter.Enabled)
            NotificationCounter.Add(1);
    }
}
