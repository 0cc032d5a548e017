using System.Collections.Concurrent;
using VmmKit.Dom0.Xen;
using VmmKit.EventChannel;
using VmmKit.XenStore.Daemon;
using VmmKit.XenStore.Transports;

namespace VmmKit.Dom0.Daemon;

/// <summary>
/// xenstored's side of every guest's store ring (XS_INTRODUCE in Xen's xenstored, domain.c <c>introduce_domain</c>):
/// the ring page (<c>struct xenstore_domain_interface</c>, xen/io/xs_wire.h) foreign-mapped through the machine-memory
/// file, the store event channel bound interdomain with <see cref="XenEvtchn"/>; a guest's kick wakes the daemon's ring
/// stream, the daemon's kick notifies the guest. The ring's indexes are the guest's, checked by VmmKit.XenStore. The
/// toolstack's XS_INTRODUCE (domid, store gfn, store port) reaches <see cref="Connect"/> through the daemon, as Xen's
/// xenstored maps the ring when libxl introduces a domain.
/// </summary>
internal sealed class StoreRings : IXenStoreDomainConnector, IDisposable
{
    private readonly Privcmd _privcmd;
    private readonly XenEvtchn _evtchn;
    private readonly ConcurrentDictionary<uint, XenStoreRingBinding> _byPort = new();
    private readonly ConcurrentDictionary<ushort, uint> _portOfDomain = new();
    private readonly ConcurrentDictionary<ushort, ulong> _frameOfDomain = new();
    private readonly CancellationTokenSource _stop = new();

    /// <summary>Serves store rings through <paramref name="privcmd"/>'s foreign maps, notified through <paramref name="evtchn"/>.</summary>
    public StoreRings(Privcmd privcmd, XenEvtchn evtchn)
    {
        _privcmd = privcmd;
        _evtchn = evtchn;
        _ = Task.Run(PumpAsync);
    }

    /// <summary>Dom0's port for <paramref name="domid"/>'s store ring, if introduced.</summary>
    public uint? LocalPort(ushort domid) => _portOfDomain.TryGetValue(domid, out uint p) ? p : null;

    /// <summary>
    /// XS_INTRODUCE: maps <paramref name="domainId"/>'s ring at guest frame <paramref name="mfn"/> (a PVH domain's store
    /// gfn, as libxl passes it) and binds its unbound port <paramref name="eventChannel"/>; null when either fails.
    /// </summary>
    public XenStoreRingBinding? Connect(uint domainId, long mfn, uint eventChannel)
    {
        if (domainId is 0 or >= 0x7FF0 || mfn < 0)
            return null;
        ushort domid = (ushort)domainId;
        ulong? frame = MapRing(domid, (ulong)mfn);
        if (frame is null)
            return null;
        try
        {
            return Bind(domid, frame.Value, _evtchn.BindInterdomain(domid, eventChannel));
        }
        catch (Exception e) when (e is EventChannelException or XenException or IOException)
        {
            return null;
        }
    }

    /// <summary>
    /// A new Dom0 takes over the ring of a domain the previous one introduced: the ring is mapped again, the guest's store
    /// port <paramref name="remotePort"/> (left unbound for domain 0 when the old process's ports were closed) is bound
    /// again, and the binding is attached to the restored daemon. Returns Dom0's new port, or null when the domain's ring
    /// or port is gone.
    /// </summary>
    public uint? Reintroduce(XenStoreDaemon daemon, ushort domid, ulong gfn, uint remotePort)
    {
        if (MapRing(domid, gfn) is not { } frame)
            return null;
        uint local;
        try
        {
            local = _evtchn.BindInterdomain(domid, remotePort);
        }
        catch (Exception e) when (e is EventChannelException or IOException)
        {
            _privcmd.Unmap([frame]);
            return null;
        }

        var binding = Bind(domid, frame, local);
        daemon.AttachDomain(domid, binding);
        binding.Signal();   // whatever the guest queued while no Dom0 ran
        return local;
    }

    private ulong? MapRing(ushort domid, ulong gfn)
    {
        var mfn = new long[1];
        try
        {
            _privcmd.MmapBatch(domid, [gfn], mfn);
        }
        catch (Exception e) when (e is XenException or IOException)
        {
            return null;
        }

        return mfn[0] < 0 ? null : (ulong)mfn[0];
    }

    private XenStoreRingBinding Bind(ushort domid, ulong frame, uint local)
    {
        var ring = new Ring(_privcmd.Channel, frame, _evtchn, local);
        var binding = new XenStoreRingBinding(ring, ring);
        _byPort[local] = binding;
        _portOfDomain[domid] = local;
        _frameOfDomain[domid] = frame;
        return binding;
    }

    /// <summary>Forgets a domain's ring (XS_RELEASE: the domain is gone).</summary>
    public void Release(ushort domid)
    {
        if (!_portOfDomain.TryRemove(domid, out uint port))
            return;
        _byPort.TryRemove(port, out _);
        try
        {
            _evtchn.Unbind(port);
            if (_frameOfDomain.TryRemove(domid, out ulong frame))
                _privcmd.Unmap([frame]);
        }
        catch (Exception e) when (e is EventChannelException or XenException or IOException)
        {
            // The domain's end is gone already.
        }
    }

    private async Task PumpAsync()
    {
        try
        {
            await foreach (uint port in _evtchn.ReadPendingAsync(_stop.Token))
            {
                if (_byPort.TryGetValue(port, out var b))
                    b.Signal();
                try
                {
                    _evtchn.Unmask(port);
                }
                catch (Exception e) when (e is EventChannelException or IOException)
                {
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or System.Threading.Channels.ChannelClosedException or IOException)
        {
            // Stopped.
        }
    }

    /// <summary>Stops reading events.</summary>
    public void Dispose() => _stop.Cancel();

    /// <summary>One ring page in the machine memory and the kick on Dom0's port.</summary>
    private sealed class Ring(HypervisorChannel channel, ulong frame, XenEvtchn evtchn, uint port) : IXenStoreRingPage, IXenStoreEventNotifier
    {
        public Span<byte> Span => channel.Frame(frame);

        public void Notify()
        {
            try
            {
                evtchn.Notify(port);
            }
            catch (Exception e) when (e is EventChannelException or IOException)
            {
                // The guest is gone; nothing to kick.
            }
        }
    }
}
