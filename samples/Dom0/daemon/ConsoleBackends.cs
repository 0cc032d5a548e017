using System.Collections.Concurrent;
using VmmKit.Backends.Console;
using VmmKit.Dom0.Xen;
using VmmKit.EventChannel;
using VmmKit.GrantTable;

namespace VmmKit.Dom0.Daemon;

/// <summary>
/// xenconsoled in the Dom0 process: a VmmKit.Backends <see cref="ConsoleBackend"/> per domain, its ring mapped through
/// <see cref="XenGnttab"/> (the grant the toolstack seeded) and its port bound with its own <see cref="XenEvtchn"/>.
/// Output goes to the domain's log (kept for <c>xl console</c>'s replay and written to
/// <c>RUNDIR/console/guest-DOMID.log</c>, as xenconsoled's <c>/var/log/xen/console/guest-NAME.log</c>) and to followers.
/// </summary>
internal sealed class ConsoleBackends(Privcmd privcmd, IGrantMapper grants, string logDirectory) : IConsoleBackend, IDisposable
{
    private sealed record Console(ConsoleBackend Backend, XenEvtchn Events, ConsoleLog Log, CancellationTokenSource Stop);

    private readonly ConcurrentDictionary<ushort, Console> _byDomain = new();

    /// <inheritdoc/>
    public uint Connect(ushort domid, uint remotePort)
    {
        var events = new XenEvtchn(privcmd);
        Directory.CreateDirectory(logDirectory);
        var log = new ConsoleLog(Path.Combine(logDirectory, $"guest-{domid}.log"));
        var backend = new ConsoleBackend(events, grants, log);
        GrantStatus s;
        try
        {
            s = backend.ConnectPrimary(domid, remotePort);
        }
        catch
        {
            events.Dispose();
            log.Dispose();
            throw;
        }

        if (s != GrantStatus.Okay)
        {
            events.Dispose();
            log.Dispose();
            throw new XenException(VmmKit.Hypercall.XenErrno.EFAULT, $"map of domain {domid}'s console grant: {s}");
        }

        var stop = new CancellationTokenSource();
        _byDomain[domid] = new Console(backend, events, log, stop);
        _ = Task.Run(async () =>
        {
            try
            {
                await backend.RunAsync(stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or System.Threading.Channels.ChannelClosedException or IOException)
            {
                // Stopped.
            }
        });
        backend.Flush();   // what the guest wrote before Dom0 connected
        return events.Ports.Single();
    }

    /// <inheritdoc/>
    public uint Reconnect(ushort domid, uint localPort, uint remotePort) =>
        // The old process's port was closed when it went (the hypervisor's evtchn release), which left the guest's port
        // unbound for domain 0: a fresh backend binds it again.
        Connect(domid, remotePort);

    /// <inheritdoc/>
    public IDisposable Follow(ushort domid, Action<ReadOnlyMemory<byte>> output, out byte[] history)
    {
        if (!_byDomain.TryGetValue(domid, out var c))
            throw new InvalidOperationException($"domain {domid} has no console");
        c.Backend.Flush();
        return c.Log.Follow(output, out history);
    }

    /// <inheritdoc/>
    public void Input(ushort domid, ReadOnlySpan<byte> data)
    {
        if (_byDomain.TryGetValue(domid, out var c))
            c.Backend.WriteInput(data);   // what does not fit is dropped, as xenconsoled drops it
    }

    /// <inheritdoc/>
    public void Disconnect(ushort domid)
    {
        if (!_byDomain.TryRemove(domid, out var c))
            return;
        c.Stop.Cancel();
        try
        {
            c.Backend.Disconnect();
        }
        catch (Exception e) when (e is EventChannelException or XenException or IOException)
        {
            // The domain's end is gone already.
        }

        c.Events.Dispose();
        c.Log.Dispose();
        c.Stop.Dispose();
    }

    /// <summary>Disconnects every console.</summary>
    public void Dispose()
    {
        foreach (ushort domid in _byDomain.Keys)
            Disconnect(domid);
    }
}
