using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using VmmKit.Hypercall;

namespace VmmKit.EventChannel;

/// <summary>
/// A libxenevtchn handle of an <see cref="EventChannelHostDomain"/>: operations go straight to the
/// <see cref="EventChannelHypervisor"/>, and ports that fire are queued for
/// <see cref="PendingAsync"/>. Thread-safe.
/// </summary>
public sealed class InProcessEventChannelClient : IEventChannelClient
{
    private readonly EventChannelHostDomain _host;
    private readonly ConcurrentQueue<uint> _fired = new();
    private readonly SemaphoreSlim _signal = new(0);
    private readonly Lock _portsLock = new();
    private readonly HashSet<uint> _ports = [];
    private bool _disposed;

    internal InProcessEventChannelClient(EventChannelHostDomain host) => _host = host;

    /// <summary>The host domain this handle belongs to.</summary>
    public EventChannelHostDomain HostDomain => _host;

    private EventChannelHypervisor Hv => _host.Hypervisor;
    private EventChannelDomain Domain => _host.Domain;

    /// <inheritdoc/>
    public uint BindInterdomain(ushort remoteDomain, uint remotePort)
    {
        var op = new EvtchnBindInterdomain { RemoteDom = remoteDomain, RemotePort = remotePort };
        // Xen sets the new port pending at once; the host domain keeps that event until Track.
        lock (_portsLock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            EventChannelException.Check(Hv.BindInterdomain(Domain, ref op), "bind_interdomain");
            Track(op.LocalPort);
        }
        return op.LocalPort;
    }

    /// <inheritdoc/>
    public uint BindUnboundPort(ushort remoteDomain)
    {
        var op = new EvtchnAllocUnbound { Dom = DomainId.Self, RemoteDom = remoteDomain };
        lock (_portsLock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            EventChannelException.Check(Hv.AllocUnbound(Domain, ref op), "bind_unbound_port");
            Track(op.Port);
        }
        return op.Port;
    }

    /// <inheritdoc/>
    public uint BindVirq(Virq virq)
    {
        var op = new EvtchnBindVirq { Virq = (uint)virq, Vcpu = 0 };
        lock (_portsLock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            EventChannelException.Check(Hv.BindVirq(Domain, ref op), "bind_virq");
            Track(op.Port);
        }
        return op.Port;
    }

    /// <inheritdoc/>
    public void Notify(uint port)
    {
        CheckOwned(port, "notify");
        EventChannelException.Check(Hv.Send(Domain, port), "notify");
    }

    /// <inheritdoc/>
    public void Unmask(uint port)
    {
        CheckOwned(port, "unmask");
        EventChannelException.Check(_host.Unmask(port), "unmask");
    }

    /// <inheritdoc/>
    public async ValueTask<uint> PendingAsync(CancellationToken cancellationToken = default)
    {
        while (true)
        {
            await _signal.WaitAsync(cancellationToken).ConfigureAwait(false);
            if (_fired.TryDequeue(out uint port))
                return port;
        }
    }

    /// <inheritdoc/>
    public async IAsyncEnumerable<uint> ReadPendingAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        while (!cancellationToken.IsCancellationRequested)
            yield return await PendingAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc/>
    public void Unbind(uint port)
    {
        lock (_portsLock)
        {
            if (!_ports.Remove(port))
                throw new EventChannelException(XenErrno.ENOTCONN, "unbind");
            _host.SetOwner(port, null);
            long rc = Hv.Close(Domain, port);
            _host.SetOwner(port, null); // closed: no event can make it an orphan any more
            EventChannelException.Check(rc, "unbind");
        }
    }

    /// <summary><c>xenevtchn_close</c>: unbinds every port of this handle.</summary>
    public void Dispose()
    {
        lock (_portsLock)
        {
            if (_disposed)
                return;
            _disposed = true;
            foreach (uint port in _ports)
            {
                _host.SetOwner(port, null);
                Hv.Close(Domain, port);
                _host.SetOwner(port, null);
            }
            _ports.Clear();
        }
    }

    internal void Deliver(uint port)
    {
        _fired.Enqueue(port);
        _signal.Release();
    }

    private void Track(uint port)
    {
        _ports.Add(port);
        _host.SetOwner(port, this);
    }

    private void CheckOwned(uint port, string operation)
    {
        lock (_portsLock)
        {
            // Linux's evtchn driver answers -ENOTCONN for a port this file did not bind.
            if (!_ports.Contains(port))
                throw new EventChannelException(XenErrno.ENOTCONN, operation);
        }
    }
}
