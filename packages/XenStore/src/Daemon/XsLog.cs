using Microsoft.Extensions.Logging;

namespace VmmKit.XenStore.Daemon;

/// <summary>
/// The daemon's log messages, source-generated (<c>[LoggerMessage]</c>): no reflection, and nothing is formatted or
/// allocated when the level is disabled. Event ids are stable (listed in the package README).
/// </summary>
internal static partial class XsLog
{
    /// <summary>XS_CONTROL <c>print</c>: xenstored writes the argument to its trace log (control.c do_control_print).</summary>
    [LoggerMessage(EventId = 1, EventName = "ControlPrint", Level = LogLevel.Information, Message = "{Text}")]
    public static partial void ControlPrint(ILogger logger, string text);

    /// <summary>A connection loop ended with an unexpected exception: a daemon bug; the connection is gone.</summary>
    [LoggerMessage(EventId = 2, EventName = "ConnectionFailed", Level = LogLevel.Error, Message = "connection {ConnectionId} (domain {DomainId}) failed")]
    public static partial void ConnectionFailed(ILogger logger, int connectionId, uint domainId, Exception? exception);

    /// <summary>A header announced more than XENSTORE_PAYLOAD_MAX: the connection is closed, as xenstored does.</summary>
    [LoggerMessage(EventId = 3, EventName = "PayloadTooLarge", Level = LogLevel.Warning, Message = "connection {ConnectionId} (domain {DomainId}): payload over XENSTORE_PAYLOAD_MAX")]
    public static partial void PayloadTooLarge(ILogger logger, int connectionId, uint domainId);

    /// <summary>During a live update a client did not take its pending output in time and was disconnected.</summary>
    [LoggerMessage(EventId = 4, EventName = "LiveUpdateStalledClient", Level = LogLevel.Warning, Message = "live update: connection {ConnectionId} stopped reading; disconnected")]
    public static partial void LiveUpdateStalledClient(ILogger logger, int connectionId);

    /// <summary>
    /// A domain's writes went past the write rate limit: its requests wait for credit (logged once per domain, as
    /// Xen 4.17's wrl_apply_debit_actual "domain %ld is affected").
    /// </summary>
    [LoggerMessage(EventId = 5, EventName = "WriteRateLimited", Level = LogLevel.Warning, Message = "write rate limit: domain {DomainId} is affected")]
    public static partial void WriteRateLimited(ILogger logger, uint domainId);
}
