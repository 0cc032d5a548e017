using System.Diagnostics.Metrics;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Daemon;

/// <summary>
/// The package's <see cref="System.Diagnostics.Metrics"/> instruments, all on the meter <see cref="MeterName"/>
/// (shared by every <see cref="XenStoreDaemon"/> and <see cref="Client.XenStoreClient"/> in the process). Listen with <c>dotnet-counters monitor
/// --counters VmmKit.XenStore</c>, OpenTelemetry's <c>AddMeter("VmmKit.XenStore")</c> or a <see cref="MeterListener"/>.
/// Tag values are static strings: recording allocates nothing.
/// </summary>
public static class XenStoreMetrics
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "VmmKit.XenStore";

    /// <summary>Counter of complete messages handled, tagged <c>type</c> with xs_wire.h's name (<c>XS_READ</c>, ...; <c>unknown</c> for a type the daemon does not know).</summary>
    public const string Requests = "vmmkit.xenstore.requests";

    /// <summary>Counter of <c>XS_ERROR</c> replies, tagged <c>errno</c> with the name sent on the wire (<c>ENOENT</c>, ...).</summary>
    public const string Errors = "vmmkit.xenstore.errors";

    /// <summary>Counter of <c>XS_WATCH_EVENT</c> messages queued to clients (including the event that acknowledges a new watch).</summary>
    public const string WatchEvents = "vmmkit.xenstore.watch_events";

    /// <summary>Counter of watch events dropped by the memory-quota or stopped-reader rules (not the duplicates xenstored also skips).</summary>
    public const string DroppedEvents = "vmmkit.xenstore.watch_events.dropped";

    /// <summary>Counter of connections added, tagged <c>kind</c>: <c>socket</c>, <c>domain_ring</c> or <c>stream</c> (restored ones after a live update included).</summary>
    public const string Connections = "vmmkit.xenstore.connections";

    /// <summary>
    /// Counter of watches whose events a <see cref="Client.XenStoreClient"/>'s consumer fell more than
    /// <see cref="Client.XenStoreClient.MaxPendingWatchEvents"/> behind on, so that they were replaced by one event for
    /// the watched path.
    /// </summary>
    public const string CollapsedWatchBacklogs = "vmmkit.xenstore.client.watch_backlogs.collapsed";

    private static readonly Meter Meter = new(MeterName);
    private static readonly Counter<long> RequestCounter = Meter.CreateCounter<long>(Requests, "{request}", "XenStore messages handled, by type");
    private static readonly Counter<long> ErrorCounter = Meter.CreateCounter<long>(Errors, "{reply}", "XS_ERROR replies, by errno");
    private static readonly Counter<long> EventCounter = Meter.CreateCounter<long>(WatchEvents, "{event}", "Watch events queued to clients");
    private static readonly Counter<long> DroppedCounter = Meter.CreateCounter<long>(DroppedEvents, "{event}", "Watch events dropped by quota or because the client stopped reading");
    private static readonly Counter<long> CollapsedCounter = Meter.CreateCounter<long>(CollapsedWatchBacklogs, "{backlog}", "Client watch backlogs replaced by one event for the watched path");
    private static readonly Counter<long> ConnectionCounter = Meter.CreateCounter<long>(Connections, "{connection}", "Connections added, by kind");

    // xs_wire.h's enum xsd_sockmsg_type names, indexed by type; cached so a measurement boxes nothing.
    private static readonly string[] TypeNames =
    [
        "XS_CONTROL", "XS_DIRECTORY", "XS_READ", "XS_GET_PERMS", "XS_WATCH", "XS_UNWATCH", "XS_TRANSACTION_START",
        "XS_TRANSACTION_END", "XS_INTRODUCE", "XS_RELEASE", "XS_GET_DOMAIN_PATH", "XS_WRITE", "XS_MKDIR", "XS_RM",
        "XS_SET_PERMS", "XS_WATCH_EVENT", "XS_ERROR", "XS_IS_DOMAIN_INTRODUCED", "XS_RESUME", "XS_SET_TARGET",
        "XS_RESTRICT", "XS_RESET_WATCHES", "XS_DIRECTORY_PART", "XS_GET_FEATURE", "XS_SET_FEATURE", "XS_GET_QUOTA",
        "XS_SET_QUOTA",
    ];

    private static readonly string[] KindNames = ["socket", "domain_ring", "stream"];

    internal static void Request(XsMessageType type)
    {
        if (RequestCounter.Enabled)
            RequestCounter.Add(1, new KeyValuePair<string, object?>("type", (uint)type < (uint)TypeNames.Length ? TypeNames[(int)type] : "unknown"));
    }

    internal static void Error(XsError error)
    {
        if (ErrorCounter.Enabled)
            ErrorCounter.Add(1, new KeyValuePair<string, object?>("errno", XsErrors.Name(error)));
    }

    internal static void EventSent() => EventCounter.Add(1);

    internal static void EventDropped() => DroppedCounter.Add(1);

    internal static void WatchBacklogCollapsed() => CollapsedCounter.Add(1);

    internal static void Connection(XsConnectionKind kind) =>
        ConnectionCounter.Add(1, new KeyValuePair<string, object?>("kind", (uint)kind < (uint)KindNames.Length ? KindNames[(int)kind] : "other"));
}
