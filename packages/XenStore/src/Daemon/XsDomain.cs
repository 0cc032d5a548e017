using VmmKit.XenStore.Store;
using VmmKit.XenStore.Transports;

namespace VmmKit.XenStore.Daemon;

/// <summary>An introduced domain (xenstored's <c>struct domain</c>).</summary>
internal sealed class XsDomain(uint domainId)
{
    public uint DomainId { get; } = domainId;

    /// <summary>The ring page's frame as given to XS_INTRODUCE (a signed decimal on the wire).</summary>
    public long Mfn { get; set; }

    public uint EventChannel { get; set; }

    public uint? Target { get; set; }

    /// <summary>Feature bits set with XS_SET_FEATURE.</summary>
    public uint Features { get; set; }

    /// <summary>Per-domain quota overrides set with XS_SET_QUOTA, or null to use the global ones.</summary>
    public XenStoreQuotas? Quotas { get; set; }

    public XsConnection? Connection { get; set; }

    public XenStoreRingBinding? Binding { get; set; }
}
