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

    /// <summary>Receives CONTROL print output and diagnostics; null = discarded.</summary>
    public Action<string>? Log { get; set; }
}
