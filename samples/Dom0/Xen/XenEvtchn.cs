using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using VmmKit.EventChannel;
using VmmKit.Hypercall;

namespace VmmKit.Dom0.Xen;

/// <summary>
/// An event channel handle of domain 0 over the hypervisor channel: what Linux's /dev/xen/evtchn gives a Dom0 process
/// (xen/evtchn.h) and libxenevtchn wraps. Binding and sending are EVTCHNOP_* hypercalls with Xen's structs in Dom0's
/// memory; a port that fires arrives as an EVENT message, masked until <see cref="Unmask"/> (EVTCHNOP_unmask).
/// </summary>
public sealed class XenEvtchn : IEventChannelClient
{
    private readonly Privcmd _privcmd;
    private readonly ConcurrentDictionary<uint, bool> _ports = new();
    private readonly Channel<uint> _fired = Channel.CreateUnbounded<uint>();
    private readonly Action<uint> _deliver;

    /// <summary>Opens a handle (<c>xenevtchn_open</c>).</summary>
    public XenEvtchn(Privcmd privcmd)
    {
        _privcmd = privcmd;
        _deliver = port => _fired.Writer.TryWrite(port);
    }

    /// <inheritdoc/>
    public uint BindInterdomain(ushort remoteDomain, uint remotePort)
    {
        var op = new EvtchnBindInterdomain { RemoteDom = remoteDomain, RemotePort = remotePort };
        Call(EventChannelOp.BindInterdomain, ref op, "bind_interdomain");
        return OwnUnmasked(op.LocalPort);
    }

    /// <inheritdoc/>
    public uint BindUnboundPort(ushort remoteDomain)
    {
        var op = new EvtchnAllocUnbound { Dom = DomainId.Self, RemoteDom = remoteDomain };
        Call(EventChannelOp.AllocUnbound, ref op, "alloc_unbound");
        return OwnUnmasked(op.Port);
    }

    /// <inheritdoc/>
    public uint BindVirq(Virq virq)
    {
        var op = new EvtchnBindVirq { Virq = (uint)virq };
        Call(EventChannelOp.BindVirq, ref op, "bind_virq");
        return OwnUnmasked(op.Port);
    }

    /// <inheritdoc/>
    public void Notify(uint port)
    {
        var op = new EvtchnSend { Port = port };
        Call(EventChannelOp.Send, ref op, "send");
    }

    /// <inheritdoc/>
    public void Unmask(uint port)
    {
        var op = new EvtchnUnmask { Port = port };
        Call(EventChannelOp.Unmask, ref op, "unmask");
    }

    /// <inheritdoc/>
    public ValueTask<uint> PendingAsync(CancellationToken cancellationToken = default) => _fired.Reader.ReadAsync(cancellationToken);

    /// <inheritdoc/>
    public async IAsyncEnumerable<uint> ReadPendingAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        while (true)
            yield return await PendingAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc/>
    public void Unbind(uint port)
    {
        if (!_ports.TryRemove(port, out _))
            throw new EventChannelException(XenErrno.EINVAL, "unbind");
        _privcmd.Channel.SetPortOwner(port, null);
        var op = new EvtchnClose { Port = port };
        Call(EventChannelOp.Close, ref op, "close");
    }

    /// <summary>The ports this handle has bound or adopted.</summary>
    public IReadOnlyCollection<uint> Ports => [.. _ports.Keys];

    /// <summary><c>xenevtchn_close</c>: closes every port this handle bound.</summary>
    public void Dispose()
    {
        foreach (uint port in _ports.Keys)
        {
            try
            {
                Unbind(port);
            }
            catch (Exception e) when (e is EventChannelException or IOException)
            {
                // Already closed, or the channel went.
            }
        }

        _fired.Writer.TryComplete();
    }

    // evtchn_bind_to_user: the port is recorded for this handle, then unmasked (Linux enables the irq it binds), since a
    // port number a closed port had may still carry that port's mask bit.
    private uint OwnUnmasked(uint port)
    {
        _ports[port] = true;
        _privcmd.Channel.SetPortOwner(port, _deliver);
        Unmask(port);
        return port;
    }

    private void Call<T>(EventChannelOp cmd, ref T op, string name) where T : unmanaged
    {
        using var buffer = _privcmd.Buffers.Rent(Unsafe.SizeOf<T>());
        buffer.As<T>() = op;
        long rc = _privcmd.Hypercall(HypercallNumber.EventChannelOp, (ulong)cmd, buffer.Address);
        if (rc < 0)
            throw new EventChannelException((XenErrno)(-rc), name);
        op = buffer.As<T>();
    }
}
