namespace VmmKit.EventChannel;

/// <summary>How <see cref="EventChannelHypervisor.CreateDomain"/> sets up a domain's event channels.</summary>
public sealed class EventChannelDomainOptions
{
    /// <summary>The domain id (<c>domid_t</c>), below <c>DOMID_FIRST_RESERVED</c>.</summary>
    public required ushort Id { get; init; }

    /// <summary>Number of vCPUs (Xen's <c>d-&gt;max_vcpus</c>), at least 1.</summary>
    public required int VcpuCount { get; init; }

    /// <summary>Raises the upcall on the domain's vCPUs.</summary>
    public required IEventChannelUpcall Upcall { get; init; }

    /// <summary>Maps the domain's frames for the FIFO ABI; without one, EVTCHNOP_init_control and expand_array fail with -EINVAL.</summary>
    public IGuestFrameMapper? FrameMapper { get; init; }

    /// <summary>
    /// Ports the domain may use: Xen's <c>max_evtchn_port + 1</c> (the toolstack's <c>max_event_channels</c>).
    /// The ABI's own limit (4096, 1024 for 32-bit guests, 131072 with FIFO) applies as well. Default 1023 + 1, as libxl.
    /// </summary>
    public int MaxPorts { get; init; } = 1024;

    /// <summary>Xen's <c>is_control_domain</c>: may act on other domains' ports under the default policy.</summary>
    public bool IsControlDomain { get; init; }

    /// <summary>The domain this one is device model for (Xen's <c>d-&gt;target</c>), if any.</summary>
    public ushort? DeviceModelFor { get; init; }
}
