namespace VmmKit.Dom0.Daemon;

/// <summary>
/// The PV console backend as the toolstack uses it (xenconsoled's part): connect a domain's console ring, follow its
/// output, send it input, disconnect.
/// </summary>
internal interface IConsoleBackend
{
    /// <summary>
    /// Connects to domain <paramref name="domid"/>'s console ring, granted to domain 0 as <c>GNTTAB_RESERVED_CONSOLE</c>
    /// (seeded by the toolstack), notified on its unbound port <paramref name="remotePort"/>; returns Dom0's port.
    /// </summary>
    uint Connect(ushort domid, uint remotePort);

    /// <summary>
    /// Takes over a connection a previous Dom0 made (its port <paramref name="localPort"/> was closed when that process
    /// went, leaving the guest's port unbound for domain 0); returns Dom0's new port.
    /// </summary>
    uint Reconnect(ushort domid, uint localPort, uint remotePort);

    /// <summary>
    /// Everything the domain printed so far, and a subscription to what it prints next (dispose to leave); an empty
    /// chunk is the last, sent when the console is disconnected.
    /// </summary>
    IDisposable Follow(ushort domid, Action<ReadOnlyMemory<byte>> output, out byte[] history);

    /// <summary>Queues keyboard input for the domain.</summary>
    void Input(ushort domid, ReadOnlySpan<byte> data);

    /// <summary>Disconnects (the domain is gone).</summary>
    void Disconnect(ushort domid);
}
