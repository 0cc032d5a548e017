namespace VmmKit.Dom0.Daemon;

/// <summary>
/// The PV console backend as the toolstack uses it (xenconsoled's part): connect a domain's console ring, follow its
/// output, send it input, disconnect. A small seam so that VmmKit.Backends' console backend can replace
/// <see cref="ConsoleRingReader"/>.
/// </summary>
internal interface IConsoleBackend
{
    /// <summary>Connects to domain <paramref name="domid"/>'s ring at machine frame <paramref name="ringFrame"/>, notified on its unbound port <paramref name="remotePort"/>; returns Dom0's port.</summary>
    uint Connect(ushort domid, ulong ringFrame, uint remotePort);

    /// <summary>Takes over a connection a previous Dom0 made: Dom0's port <paramref name="localPort"/> is still bound (domain 0 outlives its process).</summary>
    void Reconnect(ushort domid, ulong ringFrame, uint localPort);

    /// <summary>Everything the domain printed so far, and a subscription to what it prints next (dispose to leave).</summary>
    IDisposable Follow(ushort domid, Action<ReadOnlyMemory<byte>> output, out byte[] history);

    /// <summary>Queues keyboard input for the domain.</summary>
    void Input(ushort domid, ReadOnlySpan<byte> data);

    /// <summary>Disconnects (the domain is gone).</summary>
    void Disconnect(ushort domid);
}
