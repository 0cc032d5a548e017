namespace VmmKit.ReferenceHypervisor.Host;

/// <summary>What <see cref="Machine.Run"/> asks of a host with a control domain between time slices.</summary>
internal interface IMachineHost
{
    /// <summary>Serves the control domain's pending requests on the scheduler's thread; true when it served any.</summary>
    bool Poll();

    /// <summary>
    /// Whether the control domain holds work a guest may be waiting for: an event it was sent and has not served (its
    /// port still masked since the delivery), or a request of its not yet served. The scheduler does not skip guest time
    /// meanwhile; it waits for the control domain instead.
    /// </summary>
    bool HoldsWork { get; }

    /// <summary>Nothing can run: waits for a request (or a short while); false when the host is told to stop.</summary>
    bool WaitForWork();
}
