namespace VmmKit.ReferenceHypervisor.Host;

/// <summary>What <see cref="Machine.Run"/> asks of a host with a control domain between time slices.</summary>
internal interface IMachineHost
{
    /// <summary>Serves the control domain's pending requests on the scheduler's thread; true when it served any.</summary>
    bool Poll();

    /// <summary>Nothing can run: waits for a request (or a short while); false when the host is told to stop.</summary>
    bool WaitForWork();
}
