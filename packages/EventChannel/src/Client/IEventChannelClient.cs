namespace VmmKit.EventChannel;

/// <summary>
/// What a Dom0 tool or PV backend uses: the operations of libxenevtchn (<c>xenevtchn_open</c> is
/// the construction of an implementation, <c>xenevtchn_close</c> is <see cref="IDisposable.Dispose"/>,
/// which unbinds every port the handle bound). Ports fire once and stay masked until
/// <see cref="Unmask"/>, as with Linux's /dev/xen/evtchn. Failures throw
/// <see cref="EventChannelException"/> carrying Xen's errno.
/// </summary>
public interface IEventChannelClient : IDisposable
{
    /// <summary><c>xenevtchn_bind_interdomain</c>: connects a new local port to <paramref name="remotePort"/> of <paramref name="remoteDomain"/>.</summary>
    /// <param name="remoteDomain">The remote domain.</param>
    /// <param name="remotePort">An unbound port that domain allocated for this one.</param>
    /// <returns>The local port.</returns>
    uint BindInterdomain(ushort remoteDomain, uint remotePort);

    /// <summary><c>xenevtchn_bind_unbound_port</c>: allocates a local port that <paramref name="remoteDomain"/> may bind to.</summary>
    /// <param name="remoteDomain">The domain allowed to bind.</param>
    /// <returns>The local port.</returns>
    uint BindUnboundPort(ushort remoteDomain);

    /// <summary><c>xenevtchn_bind_virq</c>: binds a VIRQ (on vCPU 0).</summary>
    /// <param name="virq">The VIRQ.</param>
    /// <returns>The local port.</returns>
    uint BindVirq(Virq virq);

    /// <summary><c>xenevtchn_notify</c>: sends an event on a port bound by this handle.</summary>
    /// <param name="port">The port.</param>
    void Notify(uint port);

    /// <summary><c>xenevtchn_unmask</c>: re-enables a port after its event was read; a pending event fires again.</summary>
    /// <param name="port">The port.</param>
    void Unmask(uint port);

    /// <summary><c>xenevtchn_pending</c>: waits for the next port that fired (it is masked until <see cref="Unmask"/>).</summary>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>The port.</returns>
    ValueTask<uint> PendingAsync(CancellationToken cancellationToken = default);

    /// <summary>The ports that fire, as an awaitable stream (<see cref="PendingAsync"/> in a loop).</summary>
    /// <param name="cancellationToken">Ends the stream.</param>
    /// <returns>The ports, in the order they fired.</returns>
    IAsyncEnumerable<uint> ReadPendingAsync(CancellationToken cancellationToken = default);

    /// <summary><c>xenevtchn_unbind</c>: closes a port bound by this handle.</summary>
    /// <param name="port">The port.</param>
    void Unbind(uint port);
}
