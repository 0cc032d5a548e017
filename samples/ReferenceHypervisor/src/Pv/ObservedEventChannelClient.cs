using VmmKit.EventChannel;

namespace VmmKit.ReferenceHypervisor.Pv;

/// <summary>
/// An event channel handle of the in-process Dom0 that tells <see cref="PvActivity"/> when a service took an event
/// (work started) and when it notified a guest (work answered), so the scheduler can wait for the services before it
/// decides that blocked guests have nothing to wake them.
/// </summary>
internal sealed class ObservedEventChannelClient(IEventChannelClient inner, PvActivity activity) : IEventChannelClient
{
    /// <inheritdoc/>
    public uint BindInterdomain(ushort remoteDomain, uint remotePort) => inner.BindInterdomain(remoteDomain, remotePort);

    /// <inheritdoc/>
    public uint BindUnboundPort(ushort remoteDomain) => inner.BindUnboundPort(remoteDomain);

    /// <inheritdoc/>
    public uint BindVirq(Virq virq) => inner.BindVirq(virq);

    /// <inheritdoc/>
    public void Notify(uint port)
    {
        inner.Notify(port);
        activity.Answered();
    }

    /// <inheritdoc/>
    public void Unmask(uint port)
    {
        inner.Unmask(port);
        activity.Finished();
    }

    /// <inheritdoc/>
    public async ValueTask<uint> PendingAsync(CancellationToken cancellationToken = default)
    {
        uint port = await inner.PendingAsync(cancellationToken).ConfigureAwait(false);
        activity.Started();
        return port;
    }

    /// <inheritdoc/>
    public async IAsyncEnumerable<uint> ReadPendingAsync([System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        while (!cancellationToken.IsCancellationRequested)
            yield return await PendingAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc/>
    public void Unbind(uint port) => inner.Unbind(port);

    /// <inheritdoc/>
    public void Dispose() => inner.Dispose();
}
