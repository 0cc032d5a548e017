using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using VmmKit.Backends.Rings;
using VmmKit.Backends.Xenbus;
using VmmKit.EventChannel;
using VmmKit.GrantTable;

namespace VmmKit.Backends.Block;

/// <summary>
/// A PV block backend (blkback) for one virtual disk over an <see cref="IBlockStorage"/>: advertises the disk in its
/// XenStore directory (<c>sectors</c>, <c>info</c>, <c>sector-size</c>, <c>feature-flush-cache</c>,
/// <c>max-ring-page-order</c>, <c>feature-max-indirect-segments</c>), goes to InitWait, and when the frontend is
/// Initialised maps its ring (<c>ring-ref</c> or <c>ring-page-order</c> + <c>ring-ref%u</c>), binds its
/// <c>event-channel</c> and honours its <c>protocol</c>, then serves requests (<see cref="BlkifRingServer"/>) until the
/// frontend closes (xen/io/blkif.h, xen/io/xenbus.h). Discard, barriers, persistent grants and multiple queues are not
/// advertised. It only uses the client sides of the event channel, grant table and XenStore packages, so it runs the
/// same in a Dom0 process and in-process.
/// </summary>
public sealed partial class BlockBackend : IDisposable
{
    private readonly XenbusBackendDevice _device;
    private readonly IEventChannelClient _events;
    private readonly IGrantMapper _grants;
    private readonly IBlockStorage _storage;
    private readonly BlockBackendOptions _options;
    private readonly ILogger _log;
    private readonly Lock _lock = new();
    private BlkifRingServer? _server;
    private uint _port;
    private bool _disposed; // set by Dispose before its disconnect: the ring is never connected again

    /// <summary>Creates the backend; nothing happens until <see cref="RunAsync"/>.</summary>
    /// <param name="device">The device's XenStore directories.</param>
    /// <param name="events">An event channel handle of the backend's domain.</param>
    /// <param name="grants">Maps the frontend's grants.</param>
    /// <param name="storage">The disk.</param>
    /// <param name="options">Features and limits.</param>
    /// <exception cref="ArgumentException">
    /// An option out of range: <c>MaxRingPageOrder</c> outside 0..8, <c>MaxIndirectSegments</c> outside 0..4096, or a
    /// <c>CopyBuffer</c> with fewer pages than max(11, <c>MaxIndirectSegments</c>).
    /// </exception>
    public BlockBackend(XenbusBackendDevice device, IEventChannelClient events, IGrantMapper grants, IBlockStorage storage, BlockBackendOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(events);
        ArgumentNullException.ThrowIfNull(grants);
        ArgumentNullException.ThrowIfNull(storage);
        _device = device;
        _events = events;
        _grants = grants;
        _storage = storage;
        _options = options ?? new BlockBackendOptions();
        ArgumentOutOfRangeException.ThrowIfNegative(_options.MaxRingPageOrder);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(_options.MaxRingPageOrder, 8);
        // What BlkifRingServer needs, checked here so that no frontend's connection meets it (blkif.h: at most
        // BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST indirect pages; a copy buffer holds a request's segments).
        ArgumentOutOfRangeException.ThrowIfNegative(_options.MaxIndirectSegments);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(_options.MaxIndirectSegments, BlkifLimits.MaxIndirectPagesPerRequest * BlkifLimits.SegmentsPerIndirectPage);
        if (_options.CopyBuffer is { } buffer && buffer.PageCount < Math.Max(BlkifLimits.MaxSegmentsPerRequest, _options.MaxIndirectSegments))
            throw new ArgumentException("The copy buffer needs a page for each segment of a request.", nameof(options));
        _log = _options.Logger ?? NullLogger.Instance;
    }

    /// <summary>The backend's state as last written.</summary>
    public XenbusState State { get; private set; } = XenbusState.Initialising;

    /// <summary>The connected ring, or null.</summary>
    public BlkifRingServer? Ring => _server;

    /// <summary>
    /// Events that found no request on the ring (Linux's xenbus <c>spurious_events</c>); after two in a row, the port is
    /// unmasked late (XSA-332's late EOI).
    /// </summary>
    public long SpuriousEvents { get; private set; }

    /// <summary>Raised (on the backend's thread) each time the state changes; tests and hosts wait on it.</summary>
    public event Action<XenbusState>? StateChanged;

    /// <summary>Advertises the disk, then follows the frontend's state and serves its ring until cancelled.</summary>
    /// <param name="cancellationToken">Stops the backend (the ring is disconnected).</param>
    /// <returns>Completes when cancelled or when the XenStore connection ends.</returns>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var events = Task.Run(() => ServeEventsAsync(stop.Token), CancellationToken.None);
        try
        {
            await AdvertiseAsync(stop.Token).ConfigureAwait(false);
            // A device another backend left Connected (its Dom0 process was replaced) is taken over in that state: the
            // frontend saw Connected and keeps it; its ring is mapped again below, from where its responses stand.
            if (await _device.Store.TryReadStringAsync($"{_device.BackendPath}/state", cancellationToken: stop.Token).ConfigureAwait(false) == "4")
                State = XenbusState.Connected;
            else
                await SwitchAsync(XenbusState.InitWait, stop.Token).ConfigureAwait(false);
            await foreach (XenbusState frontend in _device.WatchFrontendStateAsync(stop.Token).ConfigureAwait(false))
                await OnFrontendStateAsync(frontend, stop.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
        finally
        {
            stop.Cancel();
            Disconnect();
            try
            {
                await events.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    private async Task AdvertiseAsync(CancellationToken ct)
    {
        string N(ulong v) => v.ToString(CultureInfo.InvariantCulture);
        await _device.WriteAsync("feature-flush-cache", "1", ct).ConfigureAwait(false);
        await _device.WriteAsync("max-ring-page-order", N((ulong)_options.MaxRingPageOrder), ct).ConfigureAwait(false);
        if (_options.MaxIndirectSegments > 0)
            await _device.WriteAsync("feature-max-indirect-segments", N((ulong)_options.MaxIndirectSegments), ct).ConfigureAwait(false);
        await _device.WriteAsync("sectors", N(_storage.Sectors), ct).ConfigureAwait(false);
        await _device.WriteAsync("info", N((ulong)(_storage.IsReadOnly ? VdiskInfo.ReadOnly : VdiskInfo.None)), ct).ConfigureAwait(false);
        await _device.WriteAsync("sector-size", N(BlkifLimits.SectorSize), ct).ConfigureAwait(false);
        await _device.WriteAsync("physical-sector-size", N(BlkifLimits.SectorSize), ct).ConfigureAwait(false);
    }

    private async Task OnFrontendStateAsync(XenbusState frontend, CancellationToken ct)
    {
        switch (frontend)
        {
            // xen-blkback's frontend_changed: (re)connect unless Connected, after a disconnect (also once a failed
            // connection went Closing). A ring left Connected by another backend is mapped again (its _server is null).
            case XenbusState.Initialised or XenbusState.Connected when !Volatile.Read(ref _disposed) && (_server is null || State != XenbusState.Connected):
                Disconnect();
                if (await TryConnectAsync(ct).ConfigureAwait(false) is { } error)
                {
                    LogConnectFailed(_device.BackendPath, error);
                    await _device.WriteAsync("error", error, ct).ConfigureAwait(false);
                    await SwitchAsync(XenbusState.Closing, ct).ConfigureAwait(false);
                }
                else
                {
                    await SwitchAsync(XenbusState.Connected, ct).ConfigureAwait(false);
                }

                break;
            case XenbusState.Closing:
                // xen-blkback's frontend_changed: Closing only follows the frontend; the ring is served (requests in
                // flight get their responses) until the frontend is Closed.
                await SwitchAsync(XenbusState.Closing, ct).ConfigureAwait(false);
                break;
            case XenbusState.Closed:
                Disconnect();
                await SwitchAsync(XenbusState.Closed, ct).ConfigureAwait(false);
                break;
            case XenbusState.Initialising when State == XenbusState.Closed:
                // The frontend starts over (a reconnect after Closed): offer the device again.
                await SwitchAsync(XenbusState.InitWait, ct).ConfigureAwait(false);
                break;
            case XenbusState.Unknown:
                Disconnect(); // the frontend directory went away
                break;
            case XenbusState.InitWait or XenbusState.Reconfiguring or XenbusState.Reconfigured:
                // xen-blkback's frontend_changed: xenbus_dev_fatal (the ring stays connected until Closed).
                string fatal = $"saw state {(int)frontend} at frontend";
                LogConnectFailed(_device.BackendPath, fatal);
                await _device.WriteAsync("error", fatal, ct).ConfigureAwait(false);
                await SwitchAsync(XenbusState.Closing, ct).ConfigureAwait(false);
                break;
        }
    }

    private async Task SwitchAsync(XenbusState state, CancellationToken ct)
    {
        if (State == state)
            return;
        await _device.SwitchStateAsync(state, ct).ConfigureAwait(false);
        State = state;
        StateChanged?.Invoke(state);
    }

    // Returns null on success, else the reason (written to the backend's "error" node). The nodes are read in the order
    // of xen-blkback's connect_ring (xenbus.c): protocol, multi-queue-num-queues, ring-page-order, then
    // read_per_ring_refs' event-channel and ring references.
    private async Task<string?> TryConnectAsync(CancellationToken ct)
    {
        // xenbus_scanf("%63s") matches nothing in an empty value: the default (native) ABI, as for a missing node.
        string? proto = await _device.ReadFrontendAsync("protocol", ct).ConfigureAwait(false);
        BlkifProtocol protocol;
        if (string.IsNullOrEmpty(proto) || proto == BlkifLimits.ProtocolX86_64)
            protocol = BlkifProtocol.X86_64;
        else if (proto == BlkifLimits.ProtocolX86_32)
            protocol = BlkifProtocol.X86_32;
        else
            return $"unknown fe protocol {proto}";

        // One queue is offered (no multi-queue-max-queues); xenbus_read_unsigned gives 1 for a missing or bad node.
        uint queues = await _device.ReadFrontendUIntAsync("multi-queue-num-queues", ct).ConfigureAwait(false) ?? 1;
        if (queues != 1)
            return $"guest requested {queues} queues, exceeding the maximum of 1";

        // A readable ring-page-order, even 0, names the pages ring-ref0..ring-refN (multi_ref); without it the ring is
        // the single page of ring-ref.
        uint? order = await _device.ReadFrontendUIntAsync("ring-page-order", ct).ConfigureAwait(false);
        if (order > (uint)_options.MaxRingPageOrder)
            return $"ring-page-order {order} is above max-ring-page-order {_options.MaxRingPageOrder}";
        if (await _device.ReadFrontendUIntAsync("event-channel", ct).ConfigureAwait(false) is not { } remotePort)
            return "reading event-channel";
        var refs = new uint[1 << (int)(order ?? 0)];
        for (int i = 0; i < refs.Length; i++)
        {
            string key = order is null ? "ring-ref" : $"ring-ref{i}";
            if (await _device.ReadFrontendUIntAsync(key, ct).ConfigureAwait(false) is not { } r)
                return $"reading {key}";
            refs[i] = r;
        }

        GrantStatus mapped = GrantedPages.TryMap(_grants, _device.FrontendDomain, refs, readOnly: false, out GrantedPages? pages);
        if (mapped != GrantStatus.Okay)
            return $"mapping ring-ref: {mapped}";
        var server = new BlkifRingServer(_grants, _device.FrontendDomain, pages!, protocol, _storage, _options.MaxIndirectSegments, _options.CopyBuffer);
        // xen-blkback's xen_blkif_map: a ring already holding more requests than it has entries is refused (-EIO).
        if (server.RequestsOverflow())
        {
            server.Dispose();
            return $"mapping ring-ref port {remotePort}: req_prod is more than a ring ahead of rsp_prod";
        }

        uint port;
        try
        {
            port = _events.BindInterdomain(_device.FrontendDomain, remotePort);
        }
        catch (EventChannelException e)
        {
            server.Dispose();
            return $"binding event-channel {remotePort}: {e.Errno}";
        }

        lock (_lock)
        {
            // Disposed while this connected: Dispose's disconnect has run (it takes this lock after setting the flag).
            if (_disposed)
            {
                server.Dispose();
                try
                {
                    _events.Unbind(port);
                }
                catch (EventChannelException)
                {
                }

                return "the backend was disposed";
            }

            _server = server;
            _port = port;
        }

        LogConnected(_device.BackendPath, refs.Length, protocol, remotePort);
        // Requests queued before the connection are served off this (XenStore watch) task, as xen-blkback serves a ring
        // only on its xenblkd thread: a frontend that keeps queueing cannot hold the handshake (its Closed, a cancel).
        _ = Task.Run(ServeRing, CancellationToken.None);
        return null;
    }

    // XSA-332's late EOI (drivers/xen/events/events_base.c, xen_irq_lateeoi_locked): past SpuriousThreshold spurious
    // events in a row the port is unmasked 2^(n-1-threshold) jiffies late, at most HZ; n stops growing at
    // (1 << n) >= HZ << 2. Here a jiffy is 1 ms (HZ 1000).
    private const int SpuriousThreshold = 1, MaxSpuriousRun = 12, MaxLateEoiMilliseconds = 1000;

    private async Task ServeEventsAsync(CancellationToken ct)
    {
        int spuriousRun = 0;
        await foreach (uint port in _events.ReadPendingAsync(ct).ConfigureAwait(false))
        {
            if (port == Volatile.Read(ref _port) && ServeRing())
            {
                spuriousRun = 0;
            }
            else
            {
                SpuriousEvents++;
                spuriousRun = Math.Min(spuriousRun + 1, MaxSpuriousRun);
                if (spuriousRun > SpuriousThreshold)
                {
                    int late = Math.Min(1 << (spuriousRun - 1 - SpuriousThreshold), MaxLateEoiMilliseconds);
                    await Task.Delay(TimeSpan.FromMilliseconds(late), _options.TimeProvider, ct).ConfigureAwait(false);
                }
            }

            try
            {
                _events.Unmask(port);
            }
            catch (EventChannelException)
            {
                // Unbound meanwhile (a disconnect): nothing to unmask.
            }
        }
    }

    /// <summary>Serves the ring now (what an event does); a host that polls may call it. Thread-safe.</summary>
    public void ProcessRing() => ServeRing();

    // True when the ring had requests.
    private bool ServeRing()
    {
        lock (_lock)
        {
            if (_server is null)
                return false;
            bool halted = _server.IsHalted;
            long taken = _server.RequestsCompleted;
            if (_server.Process())
            {
                try
                {
                    _events.Notify(_port);
                }
                catch (EventChannelException)
                {
                }
            }

            if (!halted && _server.IsHalted)
                LogHalted(_device.BackendPath);
            return _server.RequestsCompleted != taken;
        }
    }

    private void Disconnect()
    {
        // First make a Process in progress return: a frontend that keeps queueing would otherwise hold the lock.
        Volatile.Read(ref _server)?.Stop();
        lock (_lock)
        {
            if (_server is null)
                return;
            _server.Dispose();
            _server = null;
            try
            {
                _events.Unbind(_port);
            }
            catch (EventChannelException)
            {
            }

            _port = 0;
        }
    }

    /// <summary>Disconnects the ring (unmaps it, unbinds its port); <see cref="RunAsync"/> does not connect it again.</summary>
    public void Dispose()
    {
        Volatile.Write(ref _disposed, true);
        Disconnect();
    }

    [LoggerMessage(1, LogLevel.Information, "{Path}: connected, {Pages} ring page(s), {Protocol}, frontend port {Port}")]
    private partial void LogConnected(string path, int pages, BlkifProtocol protocol, uint port);

    [LoggerMessage(2, LogLevel.Warning, "{Path}: cannot connect: {Error}")]
    private partial void LogConnectFailed(string path, string error);

    [LoggerMessage(3, LogLevel.Warning, "{Path}: the frontend published more requests than the ring holds; ring processing halted")]
    private partial void LogHalted(string path);
}
