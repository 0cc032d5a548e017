using System.Collections.Concurrent;
using VmmKit.Dom0.Xen;

namespace VmmKit.Dom0.Daemon;

/// <summary>
/// A minimal PV console backend (xen/io/console.h, <c>struct xencons_interface</c>: in[1024], out[2048], then
/// in_cons, in_prod, out_cons, out_prod at 3072): the ring page is a foreign frame mapped through the machine-memory
/// file, the notification an interdomain event channel. Output is kept (a console log, as xenconsoled's) and handed to
/// followers; a guest's indexes are never trusted beyond the ring's size.
/// </summary>
internal sealed class ConsoleRingReader : IConsoleBackend, IDisposable
{
    private const int InSize = 1024, OutSize = 2048, InCons = 3072, InProd = 3076, OutCons = 3080, OutProd = 3084;

    private sealed unsafe class Console
    {
        public required ushort Domid;
        public required byte* Ring;
        public required uint LocalPort;
        public readonly MemoryStream Log = new();
        public readonly List<Action<ReadOnlyMemory<byte>>> Followers = [];
        public readonly object Lock = new();
    }

    private readonly HypervisorChannel _channel;
    private readonly XenEvtchn _evtchn;
    private readonly ConcurrentDictionary<ushort, Console> _byDomain = new();
    private readonly ConcurrentDictionary<uint, Console> _byPort = new();
    private readonly CancellationTokenSource _stop = new();

    /// <summary>A backend whose notifications come through <paramref name="evtchn"/>.</summary>
    public ConsoleRingReader(HypervisorChannel channel, XenEvtchn evtchn)
    {
        _channel = channel;
        _evtchn = evtchn;
        _ = Task.Run(PumpAsync);
    }

    /// <inheritdoc/>
    public uint Connect(ushort domid, ulong ringFrame, uint remotePort)
    {
        uint local = _evtchn.BindInterdomain(domid, remotePort);
        Add(domid, ringFrame, local);
        return local;
    }

    /// <inheritdoc/>
    public void Reconnect(ushort domid, ulong ringFrame, uint localPort)
    {
        _evtchn.Adopt(localPort);
        Add(domid, ringFrame, localPort);
    }

    private unsafe void Add(ushort domid, ulong ringFrame, uint local)
    {
        var c = new Console { Domid = domid, Ring = _channel.FramePointer(ringFrame), LocalPort = local };
        _byDomain[domid] = c;
        _byPort[local] = c;
        Drain(c);
    }

    /// <inheritdoc/>
    public IDisposable Follow(ushort domid, Action<ReadOnlyMemory<byte>> output, out byte[] history)
    {
        if (!_byDomain.TryGetValue(domid, out var c))
            throw new InvalidOperationException($"domain {domid} has no console");
        lock (c.Lock)
        {
            history = c.Log.ToArray();
            c.Followers.Add(output);
        }

        return new Unfollow(c, output);
    }

    private sealed class Unfollow(Console c, Action<ReadOnlyMemory<byte>> output) : IDisposable
    {
        public void Dispose()
        {
            lock (c.Lock)
                c.Followers.Remove(output);
        }
    }

    /// <inheritdoc/>
    public unsafe void Input(ushort domid, ReadOnlySpan<byte> data)
    {
        if (!_byDomain.TryGetValue(domid, out var c))
            return;
        lock (c.Lock)
        {
            byte* ring = c.Ring;
            uint cons = Volatile.Read(ref *(uint*)(ring + InCons));
            uint prod = *(uint*)(ring + InProd);
            foreach (byte b in data)
            {
                if (prod - cons >= InSize)
                    break;   // full: the rest is dropped, as xenconsoled drops what does not fit
                ring[prod++ & (InSize - 1)] = b;
            }

            Volatile.Write(ref *(uint*)(ring + InProd), prod);
        }

        _evtchn.Notify(c.LocalPort);
    }

    /// <inheritdoc/>
    public void Disconnect(ushort domid)
    {
        if (!_byDomain.TryRemove(domid, out var c))
            return;
        _byPort.TryRemove(c.LocalPort, out _);
        try
        {
            _evtchn.Unbind(c.LocalPort);
        }
        catch (Exception e) when (e is VmmKit.EventChannel.EventChannelException or IOException)
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
                if (_byPort.TryGetValue(port, out var c))
                {
                    Drain(c);
                    _evtchn.Unmask(port);
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or System.Threading.Channels.ChannelClosedException or IOException)
        {
            // Stopped.
        }
    }

    private unsafe void Drain(Console c)
    {
        byte[] chunk;
        lock (c.Lock)
        {
            byte* ring = c.Ring;
            uint cons = *(uint*)(ring + OutCons);
            uint prod = Volatile.Read(ref *(uint*)(ring + OutProd));
            if (prod - cons > OutSize)
            {
                Volatile.Write(ref *(uint*)(ring + OutCons), prod);   // a guest claiming more than the ring holds: resynchronised
                return;
            }

            if (prod == cons)
                return;
            chunk = new byte[prod - cons];
            for (int i = 0; cons != prod; i++, cons++)
                chunk[i] = ring[InSize + (cons & (OutSize - 1))];
            Volatile.Write(ref *(uint*)(ring + OutCons), cons);
            c.Log.Write(chunk);
            foreach (var f in c.Followers)
                f(chunk);
        }

        _evtchn.Notify(c.LocalPort);
    }

    /// <summary>Stops reading events.</summary>
    public void Dispose() => _stop.Cancel();
}
