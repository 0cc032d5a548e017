using System.Runtime.InteropServices;
using VmmKit.Backends.Xenbus;
using VmmKit.EventChannel;
using VmmKit.GrantTable;

namespace VmmKit.Backends.Console;

/// <summary>
/// A PV console backend (xenconsoled's part for one console): the guest's output from the <c>out</c> ring of
/// <c>struct xencons_interface</c> (xen/io/console.h) goes to a sink stream, and input given to
/// <see cref="WriteInput"/> goes to the <c>in</c> ring. A domain's primary console is connected with
/// <see cref="ConnectPrimary"/> from what the toolstack set up (the ring granted as <c>GNTTAB_RESERVED_CONSOLE</c>, the
/// port of HVM_PARAM_CONSOLE_EVTCHN), as xenconsoled maps it; a secondary console (<c>device/console/N</c>) with
/// <see cref="RunXenbusAsync"/>'s XenbusState handshake. The guest's indexes are never trusted beyond the ring's size.
/// Thread-safe.
/// </summary>
public sealed class ConsoleBackend : IDisposable
{
    /// <summary><c>GNTTAB_RESERVED_CONSOLE</c> (xen/grant_table.h): the grant the toolstack seeds for the primary console ring.</summary>
    public const uint ReservedConsoleGrant = 0;

    /// <summary><c>GNTTAB_RESERVED_XENSTORE</c> (xen/grant_table.h): the grant the toolstack seeds for the XenStore ring.</summary>
    public const uint ReservedXenStoreGrant = 1;

    private readonly IEventChannelClient _events;
    private readonly IGrantMapper _grants;
    private readonly Stream _output;
    private readonly TimeProvider _time;
    private readonly Lock _lock = new();
    private readonly byte[] _buffer = new byte[XenconsInterface.OutSize];
    private GrantMapping _ring;
    private bool _connected;
    private uint _port;

    /// <summary>Creates the backend.</summary>
    /// <param name="events">An event channel handle of the backend's domain.</param>
    /// <param name="grants">Maps the ring.</param>
    /// <param name="output">Where the guest's output goes (a terminal, a log file).</param>
    public ConsoleBackend(IEventChannelClient events, IGrantMapper grants, Stream output)
        : this(events, grants, output, TimeProvider.System)
    {
    }

    internal ConsoleBackend(IEventChannelClient events, IGrantMapper grants, Stream output, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(events);
        ArgumentNullException.ThrowIfNull(grants);
        ArgumentNullException.ThrowIfNull(output);
        _events = events;
        _grants = grants;
        _output = output;
        _time = time;
    }

    /// <summary>The domain whose console this is, once connected.</summary>
    public ushort DomainId { get; private set; }

    /// <summary>True while a ring is connected.</summary>
    public bool IsConnected => _connected;

    /// <summary>Bytes the guest wrote so far.</summary>
    public long OutputBytes { get; private set; }

    /// <summary>
    /// Times the guest's indexes claimed more than a ring holds: the ring is left alone until the guest puts them right,
    /// as xenconsoled's <c>buffer_append</c> and <c>ring_free_bytes</c> do.
    /// </summary>
    public long CorruptIndexes { get; private set; }

    /// <summary>
    /// Times the guest used up its <see cref="RateLimitAllowance"/> of a period, so that its port stayed masked until the
    /// period ended.
    /// </summary>
    public long RateLimited { get; private set; }

    /// <summary>
    /// Events served in each <see cref="RateLimitPeriod"/> before the port stays masked: xenconsoled's
    /// <c>RATE_LIMIT_ALLOWANCE</c> (tools/console/daemon/io.c).
    /// </summary>
    public const int RateLimitAllowance = 30;

    /// <summary>The period of <see cref="RateLimitAllowance"/>: xenconsoled's <c>RATE_LIMIT_PERIOD</c>, 200 ms.</summary>
    public static TimeSpan RateLimitPeriod { get; } = TimeSpan.FromMilliseconds(200);

    private long PeriodTicks() => RateLimitPeriod.Ticks * _time.TimestampFrequency / TimeSpan.TicksPerSecond;

    /// <summary>
    /// Connects to a domain's primary console: maps <paramref name="ringRef"/> of <paramref name="domainId"/> and binds
    /// to its unbound <paramref name="remotePort"/> (HVM_PARAM_CONSOLE_EVTCHN, allocated for this domain by the toolstack).
    /// </summary>
    /// <param name="domainId">The guest.</param>
    /// <param name="remotePort">The guest's console port.</param>
    /// <param name="ringRef">The grant of the ring page (the toolstack seeds <see cref="ReservedConsoleGrant"/>).</param>
    /// <returns><see cref="GrantStatus.Okay"/>, or why the ring could not be mapped.</returns>
    /// <exception cref="EventChannelException">The port could not be bound.</exception>
    public GrantStatus ConnectPrimary(ushort domainId, uint remotePort, uint ringRef = ReservedConsoleGrant)
    {
        lock (_lock)
        {
            if (_connected)
                throw new InvalidOperationException("The console is already connected.");
            GrantStatus s = _grants.TryMap(domainId, ringRef, readOnly: false, out GrantMapping ring);
            if (s != GrantStatus.Okay)
                return s;
            try
            {
                _port = _events.BindInterdomain(domainId, remotePort);
            }
            catch
            {
                _grants.Unmap(ring);
                throw;
            }

            (_ring, _connected, DomainId) = (ring, true, domainId);
            return GrantStatus.Okay;
        }
    }

    /// <summary>
    /// A secondary console's handshake (xen/io/console.h, xenbus.h): InitWait; when the frontend is Initialised or
    /// Connected, map its <c>ring-ref</c>, bind its <c>port</c>, go Connected; follow it to Closing/Closed. Serves events
    /// meanwhile; returns when cancelled.
    /// </summary>
    /// <param name="device">The console's XenStore directories.</param>
    /// <param name="cancellationToken">Stops the backend.</param>
    /// <returns>The handshake and service.</returns>
    public async Task RunXenbusAsync(XenbusBackendDevice device, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(device);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var serving = Task.Run(() => RunAsync(stop.Token), CancellationToken.None);
        try
        {
            await device.SwitchStateAsync(XenbusState.InitWait, stop.Token).ConfigureAwait(false);
            XenbusState state = XenbusState.InitWait;
            await foreach (XenbusState fe in device.WatchFrontendStateAsync(stop.Token).ConfigureAwait(false))
            {
                if (fe is XenbusState.Initialised or XenbusState.Connected && !_connected)
                {
                    uint? gref = await device.ReadFrontendUIntAsync("ring-ref", stop.Token).ConfigureAwait(false);
                    uint? port = await device.ReadFrontendUIntAsync("port", stop.Token).ConfigureAwait(false);
                    string? error = gref is null || port is null ? "reading ring-ref and port" : null;
                    if (error is null)
                    {
                        try
                        {
                            GrantStatus s = ConnectPrimary(device.FrontendDomain, port!.Value, gref!.Value);
                            if (s != GrantStatus.Okay)
                                error = $"mapping ring-ref: {s}";
                        }
                        catch (EventChannelException e)
                        {
                            error = $"binding port: {e.Errno}";
                        }
                    }

                    if (error is not null)
                    {
                        await device.WriteAsync("error", error, stop.Token).ConfigureAwait(false);
                    }

                    state = error is null ? XenbusState.Connected : XenbusState.Closing;
                    await device.SwitchStateAsync(state, stop.Token).ConfigureAwait(false);
                }
                else if (fe is XenbusState.Closing or XenbusState.Closed or XenbusState.Unknown)
                {
                    if (_connected)
                    {
                        Disconnect();
                    }

                    // Closed follows Closing even with the ring already unmapped (xen-blkback's frontend_changed).
                    if (fe != XenbusState.Unknown && state != fe)
                    {
                        state = fe;
                        await device.SwitchStateAsync(fe, stop.Token).ConfigureAwait(false);
                    }
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
        finally
        {
            stop.Cancel();
            try
            {
                await serving.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    /// <summary>
    /// Serves the ring's events (output copied to the sink, then the port unmasked) until cancelled. As xenconsoled,
    /// at most <see cref="RateLimitAllowance"/> events are served in each <see cref="RateLimitPeriod"/>: after that the
    /// port stays masked (the guest's later notifications stay pending) until the period ends.
    /// </summary>
    /// <param name="cancellationToken">Ends the loop.</param>
    /// <returns>The loop.</returns>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        long periodEnd = _time.GetTimestamp() + PeriodTicks();
        int served = 0;
        await foreach (uint port in _events.ReadPendingAsync(cancellationToken).ConfigureAwait(false))
        {
            if (port == Volatile.Read(ref _port))
                Flush();
            long now = _time.GetTimestamp();
            if (now >= periodEnd)
                (periodEnd, served) = (now + PeriodTicks(), 0);
            if (++served >= RateLimitAllowance)
            {
                // xenconsoled's handle_ring_read: no unmask past RATE_LIMIT_ALLOWANCE; the next period unmasks.
                RateLimited++;
                await Task.Delay(_time.GetElapsedTime(now, periodEnd), _time, cancellationToken).ConfigureAwait(false);
                (periodEnd, served) = (_time.GetTimestamp() + PeriodTicks(), 0);
            }

            try
            {
                _events.Unmask(port);
            }
            catch (EventChannelException)
            {
            }
        }
    }

    /// <summary>
    /// Copies the guest's pending output to the sink now and notifies the guest that ring space is free. A host calls it
    /// before tearing a domain down so nothing written is lost. Returns true when there was output.
    /// </summary>
    /// <returns>Whether output was copied.</returns>
    public bool Flush()
    {
        int n;
        lock (_lock)
        {
            if (!_connected)
                return false;
            ref XenconsInterface ring = ref MemoryMarshal.AsRef<XenconsInterface>(_grants.GetPage(_ring));
            uint cons = Volatile.Read(ref ring.OutCons);
            uint prod = Volatile.Read(ref ring.OutProd);
            Interlocked.MemoryBarrier(); // rmb: bytes after out_prod
            if (prod - cons > XenconsInterface.OutSize)
            {
                // Xen 4.17's xenconsoled io.c, buffer_append: indexes claiming more than the ring holds are ignored;
                // nothing is read or written back and the guest is not notified.
                CorruptIndexes++;
                return false;
            }

            n = (int)(prod - cons);
            if (n == 0)
                return false;
            ReadOnlySpan<byte> bytes = ring.Out;
            for (int i = 0; i < n; i++)
                _buffer[i] = bytes[(int)((cons + (uint)i) & (XenconsInterface.OutSize - 1))];
            Interlocked.MemoryBarrier(); // mb: read the bytes before freeing them
            Volatile.Write(ref ring.OutCons, prod);
            OutputBytes += n;
            try
            {
                _output.Write(_buffer, 0, n);
                _output.Flush();
            }
            catch (IOException)
            {
                // The sink failed (a closed terminal): the guest's output is dropped, the guest is not stopped.
            }

            Notify();
        }

        return true;
    }

    /// <summary>Puts console input in the guest's <c>in</c> ring, as much as fits, and notifies it.</summary>
    /// <param name="input">The bytes typed.</param>
    /// <returns>Bytes accepted (0 when the ring is full or no console is connected).</returns>
    public int WriteInput(ReadOnlySpan<byte> input)
    {
        lock (_lock)
        {
            if (!_connected || input.IsEmpty)
                return 0;
            ref XenconsInterface ring = ref MemoryMarshal.AsRef<XenconsInterface>(_grants.GetPage(_ring));
            uint cons = Volatile.Read(ref ring.InCons);
            uint prod = Volatile.Read(ref ring.InProd);
            uint used = prod - cons;
            if (used > XenconsInterface.InSize)
            {
                CorruptIndexes++;
                return 0;
            }

            int n = Math.Min(input.Length, XenconsInterface.InSize - (int)used);
            Span<byte> bytes = ring.In;
            for (int i = 0; i < n; i++)
                bytes[(int)((prod + (uint)i) & (XenconsInterface.InSize - 1))] = input[i];
            Interlocked.MemoryBarrier(); // wmb: bytes before in_prod
            Volatile.Write(ref ring.InProd, prod + (uint)n);
            if (n > 0)
                Notify();
            return n;
        }
    }

    private void Notify()
    {
        try
        {
            _events.Notify(_port);
        }
        catch (EventChannelException)
        {
        }
    }

    /// <summary>Disconnects: flushes, unbinds the port and unmaps the ring.</summary>
    public void Disconnect()
    {
        Flush();
        lock (_lock)
        {
            if (!_connected)
                return;
            _connected = false;
            try
            {
                _events.Unbind(_port);
            }
            catch (EventChannelException)
            {
            }

            _port = 0;
            _grants.Unmap(_ring);
        }
    }

    /// <summary>Disconnects.</summary>
    public void Dispose() => Disconnect();

}
