using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using VmmKit.XenStore.Store;
using VmmKit.XenStore.Transports;

namespace VmmKit.XenStore.Daemon;

/// <summary>Settings of a <see cref="XenStoreDaemon"/>.</summary>
public sealed class XenStoreDaemonOptions
{
    /// <summary>Global quotas (xenstored's defaults unless changed).</summary>
    public XenStoreQuotas Quotas { get; set; } = new();

    /// <summary>Maps a domain's ring when XS_INTRODUCE arrives; null = domains are only recorded.</summary>
    public IXenStoreDomainConnector? DomainConnector { get; set; }

    /// <summary>
    /// Receives XS_CONTROL <c>print</c> output (Information, event id 1) and diagnostics: a failed connection loop
    /// (Error, 2), an oversized payload (Warning, 3), a client dropped during a live update (Warning, 4).
    /// <see cref="NullLogger.Instance"/> (the default) discards them. Pass e.g.
    /// <c>loggerFactory.CreateLogger&lt;XenStoreDaemon&gt;()</c>.
    /// </summary>
    public ILogger Logger { get; set; } = NullLogger.Instance;

    /// <summary>
    /// The clock of the write rate limit (Xen 4.17's <c>wrl_*</c>: an unprivileged domain writing while transactions
    /// are open earns 200 writes a second, shared by the domains). <see cref="TimeProvider.System"/> by default.
    /// </summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;
}
