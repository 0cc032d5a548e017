using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using VmmKit.XenStore.Store;
using VmmKit.XenStore.Transports;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Daemon;

/// <summary>
/// A XenStore daemon: Xen's xenstored protocol and semantics over a Unix socket (what libxenstore and the
/// xenstore-* tools use, via <c>XENSTORED_PATH</c>), over domains' shared rings, and over in-process streams.
/// One lock serialises the store (xenstored is single-threaded); each connection reads and writes
/// asynchronously, so a client that stops reading only stalls itself.
/// </summary>
public sealed class XenStoreDaemon : IAsyncDisposable
{
    /// <summary>The socket path libxenstore uses when <c>XENSTORED_PATH</c> is not set.</summary>
    public const string DefaultSocketPath = "/var/run/xenstored/socket";

    private const int ReceiveBufferSize = 64 * 1024;

    private readonly XsProcessor _processor;
    private readonly Lock _gate;
    private readonly TimeProvider _time;
    private readonly CancellationTokenSource _stopping = new();
    private readonly List<Task> _pumps = [];
    private readonly List<Listener> _listeners = [];
    private readonly Dictionary<string, Socket> _adoptedListeners = new(StringComparer.Ordinal);
    private readonly TaskCompletionSource<XsLiveUpdate> _liveUpdateReady = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile bool _handingOver;

    /// <summary>A listening socket and the <see cref="RunAsync"/> loop serving it.</summary>
    private sealed record Listener(Socket Socket, string Path)
    {
        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>Creates a daemon with an empty store (just <c>/</c>, <c>/tool</c> and <c>/tool/xenstored</c>).</summary>
    public XenStoreDaemon(XenStoreDaemonOptions? options = null)
    {
        options ??= new XenStoreDaemonOptions();
        _processor = new XsProcessor(options.Quotas)
        {
            DomainConnector = options.DomainConnector,
            Logger = options.Logger ?? NullLogger.Instance,
            WriteRate = new XsWriteRateLimit(options.TimeProvider ?? TimeProvider.System),
        };
        _time = options.TimeProvider ?? TimeProvider.System;
        _processor.ServeConnection = c => StartPump(c);
        _gate = _processor.Gate;
    }

    /// <summary>A daemon that owns its process: XS_CONTROL live-update replaces the process image (see <see cref="RunMainAsync"/>).</summary>
    private XenStoreDaemon(XenStoreDaemonOptions options, bool processLiveUpdate)
        : this(options)
    {
        _processor.LiveUpdateSupported = processLiveUpdate;
        _processor.LiveUpdateStarted = session => _ = Task.Run(() => MonitorLiveUpdateAsync(session));
    }

    internal XsProcessor Processor => _processor;

    internal Lock Gate => _gate;

    /// <summary>The global quotas in force.</summary>
    public XenStoreQuotas Quotas => _processor.GlobalQuotas;

    /// <summary>The socket path to use: <c>XENSTORED_PATH</c> if set, else <see cref="DefaultSocketPath"/> (as libxenstore's xs_daemon_socket).</summary>
    public static string SocketPathFromEnvironment() =>
        Environment.GetEnvironmentVariable("XENSTORED_PATH") is { Length: > 0 } p ? p : DefaultSocketPath;

    /// <summary>Number of live connections.</summary>
    public int ConnectionCount
    {
        get { lock (_gate) return _processor.Connections.Count; }
    }

    /// <summary>Number of nodes in the store.</summary>
    public int NodeCount
    {
        get { lock (_gate) return _processor.Store.NodeCount; }
    }

    /// <summary>
    /// Listens on <paramref name="socketPath"/> (a stale socket file is replaced) and serves clients until
    /// <paramref name="cancellationToken"/> is cancelled; the socket file is removed on the way out.
    /// </summary>
    public async Task RunAsync(string socketPath, CancellationToken cancellationToken)
    {
        var listener = Listen(socketPath);
        var socket = listener.Socket;
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stopping.Token);
        try
        {
            while (!linked.IsCancellationRequested)
            {
                Socket client;
                try
                {
                    client = await socket.AcceptAsync(linked.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
                catch (SocketException) when (linked.IsCancellationRequested)
                {
                    break;
                }
                ServeSocket(client);
            }
        }
        finally
        {
            // On a live update the listening socket (and its file) stay for the new daemon to adopt.
            if (!_handingOver)
            {
                socket.Dispose();
                lock (_gate)
                    _listeners.Remove(listener);
                TryDelete(socketPath);
            }
            listener.Done.TrySetResult();
        }
    }

    /// <summary>
    /// Entry point for a daemon process (<c>vmmkit-xenstored</c>):
    /// <c>[-U|--live-update] [--rundir DIR] [xenstored's options] [socket-path]</c>. The socket path defaults to
    /// <c>XENSTORED_PATH</c>, else <see cref="DefaultSocketPath"/>; the run directory (where a live update
    /// leaves <c>state_dump</c>) to <c>XENSTORED_RUNDIR</c>, else <c>/var/run/xenstored</c>. Such a daemon
    /// accepts xenstored's XS_CONTROL <c>live-update</c> (what <c>xenstore-control live-update</c> sends): it
    /// dumps its state, keeps every socket open across an execve of the new binary, and the new process,
    /// started with <c>-U</c>, restores the state and answers the requester. Returns 0 after a clean
    /// shutdown, 1 when a <c>-U</c> start finds no usable state, 2 for bad arguments.
    /// </summary>
    /// <param name="args">The command line.</param>
    /// <param name="output">Receives <c>--help</c>'s usage text (the host passes <c>Console.Out</c>).</param>
    /// <param name="error">Receives argument errors with the usage, and start or live-update failures (the host passes <c>Console.Error</c>).</param>
    /// <param name="logger">The daemon's log (<see cref="XenStoreDaemonOptions.Logger"/>); null writes each message as a line to <paramref name="error"/>.</param>
    /// <param name="cancellationToken">Stops the daemon (the host cancels it on SIGTERM/SIGINT).</param>
    /// <returns>The process exit code.</returns>
    public static async Task<int> RunMainAsync(string[] args, TextWriter output, TextWriter error, ILogger? logger, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(error);
        if (!XsDaemonCommandLine.TryParse(args, out var cmd, out string? message))
        {
            error.WriteLine(message);
            error.WriteLine(XsDaemonCommandLine.Usage);
            return 2;
        }
        if (cmd.Help)
        {
            output.WriteLine(XsDaemonCommandLine.Usage);
            return 0;
        }
        logger ??= new TextWriterLogger(error);
        var daemon = new XenStoreDaemon(new XenStoreDaemonOptions { Logger = logger, Quotas = cmd.Quotas.Clone() }, processLiveUpdate: true);
        try
        {
            if (cmd.LiveUpdate)
            {
                // lu_read_state: the dump is read once, then removed.
                byte[] state;
                try
                {
                    state = File.ReadAllBytes(cmd.StateFile);
                    File.Delete(cmd.StateFile);
                    daemon.RestoreState(state);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
                {
                    error.WriteLine($"xenstored: no state found after live-update ({e.Message})");
                    return 1;
                }
            }
            while (true)
            {
                var serving = daemon.RunAsync(cmd.SocketPath, cancellationToken);
                if (await Task.WhenAny(serving, daemon._liveUpdateReady.Task).ConfigureAwait(false) == serving)
                {
                    await serving.ConfigureAwait(false);
                    return 0;
                }
                var session = await daemon._liveUpdateReady.Task.ConfigureAwait(false);
                var (state, failed) = await daemon.HandOverAsync(session).ConfigureAwait(false);
                await serving.ConfigureAwait(false);
                // Returns only when the new binary could not be started: carry on with the same state.
                string failure = XsExec.ReplaceProcess(session, args, cmd.StateFile, state);
                error.WriteLine($"xenstored: live update failed: {failure}");
                await daemon.DisposeAsync().ConfigureAwait(false);
                daemon = new XenStoreDaemon(new XenStoreDaemonOptions { Logger = logger, Quotas = cmd.Quotas.Clone() }, processLiveUpdate: true);
                daemon.RestoreState(failed!);
            }
        }
        finally
        {
            await daemon.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Waits for a started live update to be allowed (lu.c's do_lu_start, polled): hands it to the host, or
    /// answers the requester with the refusal once the timeout passed.
    /// </summary>
    private async Task MonitorLiveUpdateAsync(XsLiveUpdate session)
    {
        while (!_stopping.IsCancellationRequested)
        {
            XsProcessor.LiveUpdateVerdict verdict;
            lock (_gate)
                verdict = _processor.CheckLiveUpdate(session);
            if (verdict == XsProcessor.LiveUpdateVerdict.Go)
            {
                _liveUpdateReady.TrySetResult(session);
                return;
            }
            if (verdict == XsProcessor.LiveUpdateVerdict.Refused)
            {
                await session.Requester.DrainAsync().ConfigureAwait(false);
                return;
            }
            try
            {
                await Task.Delay(100, _stopping.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private Listener Listen(string socketPath)
    {
        Socket? adopted;
        lock (_gate)
        {
            // xenstored's state names no path for its listening socket: it serves whatever path this daemon serves.
            if (_adoptedListeners.Remove(socketPath, out adopted) || _adoptedListeners.Remove("", out adopted))
            {
                var entry = new Listener(adopted, socketPath);
                _listeners.Add(entry);
                return entry;
            }
        }
        string? dir = Path.GetDirectoryName(socketPath);
        if (!string.IsNullOrEmpty(dir))
            Directory.CreateDirectory(dir);
        TryDelete(socketPath);
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(socketPath));
        listener.Listen(512);
        // .NET unlinks the file of a socket it bound when that socket is disposed, which would break a later
        // live-update handover; the daemon serves a duplicate of the descriptor instead and removes the file
        // itself when it stops.
        int fd = XsSocketHandover.Detach(listener, socketPath);
        var l = new Listener(XsSocketHandover.Adopt(fd), socketPath);
        lock (_gate)
            _listeners.Add(l);
        return l;
    }

    private static void TryDelete(string path)
    {
        try
        {
            if (File.Exists(path))
                File.Delete(path);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    /// <summary>
    /// Serves a client over any stream. Socket clients act as dom0; a <see cref="XsConnectionKind.Stream"/>
    /// client acts as <paramref name="domainId"/> (privileged only when it is 0).
    /// </summary>
    public void ServeStream(Stream stream, XsConnectionKind kind, uint domainId)
    {
        ArgumentNullException.ThrowIfNull(stream);
        XsConnection c;
        lock (_gate)
            c = _processor.AddConnection(kind, kind == XsConnectionKind.Socket ? 0 : domainId, stream);
        StartPump(c);
    }

    private void ServeSocket(Socket socket)
    {
        XsConnection c;
        lock (_gate)
        {
            c = _processor.AddConnection(XsConnectionKind.Socket, 0, new NetworkStream(socket, ownsSocket: true));
            c.Socket = socket;
        }
        StartPump(c);
    }

    /// <summary>Creates an in-process connection acting as <paramref name="domainId"/> and returns the client's end.</summary>
    public Stream Connect(uint domainId = 0)
    {
        var (client, server) = XenStoreInMemoryTransport.CreatePair();
        ServeStream(server, XsConnectionKind.Stream, domainId);
        return client;
    }

    /// <summary>
    /// Serves a domain's ring directly (the host mapped it itself, or re-attaches it after a restore) and
    /// records the domain as introduced.
    /// </summary>
    public void AttachDomain(uint domainId, XenStoreRingBinding binding)
    {
        ArgumentNullException.ThrowIfNull(binding);
        if (domainId == 0 || domainId >= XsConstants.DomidFirstReserved)
            throw new ArgumentOutOfRangeException(nameof(domainId));
        lock (_gate)
            _processor.AttachDomainRing(_processor.GetOrAddDomain(domainId), binding);
    }

    /// <summary>Connection loops that ended with an unexpected exception (a daemon bug; each is also logged).</summary>
    internal int PumpFaults => Volatile.Read(ref _pumpFaults);

    private int _pumpFaults;

    private void StartPump(XsConnection c)
    {
        var task = Task.Run(() => PumpAsync(c));
        _ = task.ContinueWith(
            t =>
            {
                Interlocked.Increment(ref _pumpFaults);
                XsLog.ConnectionFailed(_processor.Logger, c.Id, c.DomainId, t.Exception);
            },
            CancellationToken.None,
            TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);
        lock (_pumps)
        {
            _pumps.RemoveAll(t => t.IsCompleted);
            _pumps.Add(task);
        }
    }

    /// <summary>
    /// Reads messages, handles each complete one under the store lock, then flushes replies and the events
    /// it caused. A header announcing more than XENSTORE_PAYLOAD_MAX ends the connection, as in xenstored.
    /// </summary>
    private async Task PumpAsync(XsConnection c)
    {
        var stream = c.Transport!;
        var ring = stream as XenStoreRingStream;
        var buffer = new byte[ReceiveBufferSize];
        int start = 0, end = 0;
        XsConnection[]? kicks = null;
        // Input a previous daemon had read but not handled before a live update.
        if (c.PendingInput is { } carried)
        {
            carried.CopyTo(buffer, 0);
            end = carried.Length;
            c.PendingInput = null;
        }
        bool detached = false;
        // The ring resets (reconnect, repeated INTRODUCE) the data in the buffer was read after.
        int dataResets = ring?.Resets ?? 0;
        try
        {
            await c.DrainAsync().ConfigureAwait(false);
            bool pending = end > 0 && XsFrameReader.TryRead(buffer.AsSpan(0, end), out _, out _, out _) != XsFrameStatus.NeedMore;
            while (!c.Closed && !_stopping.IsCancellationRequested)
            {
                if (!pending)
                {
                    int resets = ring?.Resets ?? 0;
                    if (resets != dataResets)
                        (start, end, dataResets) = (0, 0, resets);
                    int n = await stream.ReadAsync(buffer.AsMemory(end), _stopping.Token).ConfigureAwait(false);
                    if (n == 0)
                        break;
                    if (ring is not null && ring.Resets != resets)
                    {
                        // The guest reconnected (xenstore-ring.txt): a request partly read before is dropped.
                        buffer.AsSpan(end, n).CopyTo(buffer);
                        (start, end, dataResets) = (0, n, ring.Resets);
                    }
                    else
                    {
                        end += n;
                    }
                }
                else if (ring is not null && ring.CheckReconnect())
                {
                    // Requests read but not handled when the guest asked for a fresh ring are discarded.
                    (start, end, pending) = (0, 0, false);
                    continue;
                }
                bool broken = false;
                int kickCount = 0;
                TimeSpan rateWait = TimeSpan.Zero;
                lock (_gate)
                {
                    // domain_conn_reset (a repeated INTRODUCE) dropped what was read but not handled.
                    if (ring is not null && ring.Resets != dataResets)
                        (start, end, dataResets) = (0, 0, ring.Resets);
                    // quota_req_outstanding (its domain's own, if set): an unprivileged client gets at most this many replies queued
                    // before the daemon stops reading from it until they are written.
                    int budget = c.Privileged ? int.MaxValue : Math.Max(1, _processor.QuotasFor(c).Outstanding);
                    while (budget-- > 0)
                    {
                        // domain_can_read: a domain in debt with the write rate limit is not read until paid back.
                        if (!c.Privileged && !_processor.WriteRate.CanRead(c.DomainId, out rateWait))
                            break;
                        var status = XsFrameReader.TryRead(buffer.AsSpan(start, end - start), out var header, out var payload, out int consumed);
                        if (status == XsFrameStatus.NeedMore)
                            break;
                        if (status == XsFrameStatus.Oversized)
                        {
                            broken = true;
                            break;
                        }
                        _processor.Process(c, header, payload);
                        start += consumed;
                    }
                    if (_processor.Kicks.Count > 0)
                    {
                        kickCount = _processor.Kicks.Count;
                        if (kicks is null || kicks.Length < kickCount)
                            kicks = new XsConnection[Math.Max(kickCount, 8)];
                        _processor.Kicks.CopyTo(kicks);
                        _processor.Kicks.Clear();
                    }
                }
                for (int i = 0; i < kickCount; i++)
                {
                    if (kicks![i] != c)
                        _ = kicks[i].DrainAsync();
                    kicks[i] = null!;
                }
                if (broken)
                {
                    XsLog.PayloadTooLarge(_processor.Logger, c.Id, c.DomainId);
                    break;
                }
                if (start == end)
                {
                    start = end = 0;
                }
                else if (buffer.Length - end < XsConstants.HeaderSize + XsConstants.PayloadMax)
                {
                    buffer.AsSpan(start, end - start).CopyTo(buffer);
                    end -= start;
                    start = 0;
                }
                // quota_req_outstanding / domain_can_read: a domain reads on only once its output is taken.
                if (c.Privileged)
                    await c.DrainAsync().ConfigureAwait(false);
                else
                    await c.WaitForOutputAsync(_stopping.Token).ConfigureAwait(false);
                pending = XsFrameReader.TryRead(buffer.AsSpan(start, end - start), out _, out _, out _) != XsFrameStatus.NeedMore;
                if (rateWait > TimeSpan.Zero)
                    await Task.Delay(rateWait, _time, _stopping.Token).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or OperationCanceledException or SocketException or InvalidOperationException)
        {
        }
        finally
        {
            lock (_gate)
            {
                // A domain connection that is only detached (daemon stopping for a restart) keeps its state.
                if (!_stopping.IsCancellationRequested)
                    _processor.RemoveConnection(c);
                // A socket connection being handed to a new daemon stays open, with its unhandled input.
                else if (_handingOver && c.Kind == XsConnectionKind.Socket && !c.Closed && c.Socket is not null)
                {
                    c.PendingInput = buffer.AsSpan(start, end - start).ToArray();
                    detached = true;
                }
                // A ring stays listed until the live-update state is written.
                else if (_handingOver && c.Kind == XsConnectionKind.DomainRing)
                    detached = true;
            }
            if (!detached)
                c.Close();
        }
    }

    /// <summary>
    /// Dumps the whole state — nodes with permissions and generations, domains, connections with their
    /// watches, open transactions — like xenstored's live-update state record. See <see cref="RestoreState"/>.
    /// </summary>
    public byte[] SaveState()
    {
        lock (_gate)
            return XsStateSerializer.Save(_processor);
    }

    /// <summary>
    /// Loads a state from <see cref="SaveState"/> or <see cref="LiveUpdateAsync"/> into this (fresh) daemon.
    /// Domain connections come back with their watches and wait for <see cref="AttachDomain"/> to give them
    /// their ring again; their open transactions are kept but fail with EAGAIN, so clients retry them.
    /// A live-update state also carries socket connections by file descriptor: they are adopted and served
    /// at once, with their watches and unhandled input, and the listening socket is adopted by the next
    /// <see cref="RunAsync"/> on the same path. In-process stream clients are not carried over.
    /// </summary>
    public void RestoreState(ReadOnlySpan<byte> state)
    {
        var adopted = new List<XsConnection>();
        var listeners = new List<(string Path, int Fd)>();
        lock (_gate)
        {
            XsStateSerializer.Restore(_processor, state, listeners, adopted);
            foreach (var (path, fd) in listeners)
            {
                var socket = XsSocketHandover.Adopt(fd);
                if (!_adoptedListeners.TryAdd(path, socket))
                    socket.Dispose();
            }
        }
        foreach (var c in adopted)
            StartPump(c);
    }

    /// <summary>
    /// Live update, as xenstored's XS_CONTROL "live-update" (tools/xenstored/lu.c, lu_daemon.c): stops
    /// serving, writes out queued replies and events, and detaches every Unix-socket connection and every
    /// listening socket WITHOUT closing them. The returned state holds their file descriptors (duplicated,
    /// FD_CLOEXEC clear, so they also survive an execve) beside the nodes, domains and watches; a new daemon's
    /// <see cref="RestoreState"/> adopts them, so socket clients keep their connection and watches. Output a
    /// client has not taken yet travels in the state; a client whose pending write stays stuck for
    /// <see cref="HandoverWriteTimeout"/> (it stopped reading) is disconnected instead of holding the update up.
    /// Domain rings wait for <see cref="AttachDomain"/> as after <see cref="SaveState"/>; in-process streams
    /// are closed. This daemon is finished afterwards. Whoever holds the state owns the descriptors.
    /// </summary>
    public async Task<byte[]> LiveUpdateAsync()
    {
        var (state, _) = await HandOverAsync(null).ConfigureAwait(false);
        return state;
    }

    /// <summary>How long <see cref="LiveUpdateAsync"/> waits for a write to a client that is not reading.</summary>
    public static TimeSpan HandoverWriteTimeout { get; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// The handover behind <see cref="LiveUpdateAsync"/>. With a <paramref name="session"/> it returns two
    /// states: one whose restore answers the requester "OK", one that answers it with the exec failure.
    /// </summary>
    private async Task<(byte[] State, byte[]? Failed)> HandOverAsync(XsLiveUpdate? session)
    {
        if (_stopping.IsCancellationRequested)
            throw new ObjectDisposedException(nameof(XenStoreDaemon));
        _handingOver = true;
        _stopping.Cancel();
        Task[] loops;
        lock (_gate)
            loops = [.. _listeners.Select(l => l.Done.Task)];
        await Task.WhenAll(loops).ConfigureAwait(false);
        Task[] pumps;
        lock (_pumps)
            pumps = [.. _pumps];
        await Task.WhenAll(pumps).ConfigureAwait(false);

        List<XsConnection> sockets;
        lock (_gate)
            sockets = [.. _processor.Connections.Where(c => c.Kind == XsConnectionKind.Socket && !c.Closed && c.Socket is not null)];
        var settled = await Task.WhenAll(sockets.Select(c => c.SettleOutputAsync(HandoverWriteTimeout))).ConfigureAwait(false);

        lock (_gate)
        {
            for (int i = 0; i < sockets.Count; i++)
            {
                var c = sockets[i];
                if (!settled[i])
                {
                    XsLog.LiveUpdateStalledClient(_processor.Logger, c.Id);
                    c.Close();
                    _processor.RemoveConnection(c);
                    continue;
                }
                if (c.Closed)
                    continue;
                var socket = c.Socket!;
                c.Transport = null;
                c.Socket = null;
                c.HandoverFd = XsSocketHandover.Detach(socket);
            }
            var listeners = new List<(string Path, int Fd)>();
            foreach (var l in _listeners)
                listeners.Add((l.Path, XsSocketHandover.Detach(l.Socket)));
            _listeners.Clear();
            foreach (var (path, s) in _adoptedListeners)
                listeners.Add((path, XsSocketHandover.Detach(s)));
            _adoptedListeners.Clear();
            byte[] state;
            byte[]? failed = null;
            if (session is null)
            {
                state = XsStateSerializer.Save(_processor, listeners);
            }
            else
            {
                var ok = _processor.FinishLiveUpdate(session, "OK");
                state = XsStateSerializer.Save(_processor, listeners, ok);
                failed = XsStateSerializer.Save(_processor, listeners, ok with { Text = "Error activating new binary." });
            }
            // Detached sockets have no transport left, so this only ends rings and in-process streams.
            foreach (var c in _processor.Connections)
                c.Close();
            return (state, failed);
        }
    }

    /// <summary>Stops listening and closes every connection.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_stopping.IsCancellationRequested)
            return;
        _stopping.Cancel();
        lock (_gate)
        {
            foreach (var l in _listeners)
                l.Socket.Dispose();
            foreach (var s in _adoptedListeners.Values)
                s.Dispose();
            foreach (var c in _processor.Connections)
                c.Close();
        }
        Task[] pumps;
        lock (_pumps)
            pumps = [.. _pumps];
        try
        {
            await Task.WhenAll(pumps).WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
        }
        _stopping.Dispose();
    }
}
