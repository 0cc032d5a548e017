using System.Buffers;
using System.Collections.Concurrent;
using System.Globalization;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Text;
using VmmKit.XenStore.Store;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Client;

/// <summary>
/// An asynchronous XenStore client over any transport stream (Unix socket, domain ring, in-memory).
/// Requests may be issued concurrently; replies are matched by <c>req_id</c>, and watch events are
/// routed by token to <see cref="WatchAsync"/> enumerations.
/// </summary>
public sealed class XenStoreClient : IAsyncDisposable
{
    private readonly Stream _stream;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly ConcurrentDictionary<uint, TaskCompletionSource<XenStoreReply>> _pending = new();
    private readonly ConcurrentDictionary<string, XenStoreWatchBacklog> _watches = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _closing = new();
    private readonly Task _reader;
    private int _nextRequestId;
    private int _nextToken;
    private int _maxPendingWatchEvents = 4096;

    /// <summary>Starts a client over <paramref name="stream"/>; the client owns and disposes it.</summary>
    public XenStoreClient(Stream stream)
    {
        _stream = stream ?? throw new ArgumentNullException(nameof(stream));
        _reader = Task.Run(ReadLoopAsync);
    }

    /// <summary>Connects to a daemon's Unix socket (for example <see cref="Daemon.XenStoreDaemon.SocketPathFromEnvironment"/>).</summary>
    public static async Task<XenStoreClient> ConnectAsync(string socketPath, CancellationToken cancellationToken = default)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        return new XenStoreClient(new NetworkStream(socket, ownsSocket: true));
    }

    // ---- Raw requests ------------------------------------------------------------------------

    /// <summary>Sends one request and returns the raw reply (an <c>XS_ERROR</c> reply is returned, not thrown).</summary>
    public async Task<XenStoreReply> RequestAsync(XsMessageType type, ReadOnlyMemory<byte> payload, uint transactionId = 0, CancellationToken cancellationToken = default)
    {
        if (payload.Length > XsConstants.PayloadMax)
            throw new XenStoreException(XsError.E2BIG, type);
        uint id = (uint)Interlocked.Increment(ref _nextRequestId);
        var tcs = new TaskCompletionSource<XenStoreReply>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[id] = tcs;
        int size = XsConstants.HeaderSize + payload.Length;
        byte[] frame = ArrayPool<byte>.Shared.Rent(size);
        try
        {
            new XsHeader(type, id, transactionId, (uint)payload.Length).Write(frame);
            payload.Span.CopyTo(frame.AsSpan(XsConstants.HeaderSize));
            await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                await _stream.WriteAsync(frame.AsMemory(0, size), cancellationToken).ConfigureAwait(false);
                await _stream.FlushAsync(cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                _writeLock.Release();
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or SocketException)
        {
            _pending.TryRemove(id, out _);
            throw new XenStoreException("XenStore connection lost", e);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(frame);
        }
        using (cancellationToken.Register(static s => ((TaskCompletionSource<XenStoreReply>)s!).TrySetCanceled(), tcs))
            return await tcs.Task.ConfigureAwait(false);
    }

    private async Task<byte[]> CallAsync(XsMessageType type, ReadOnlyMemory<byte> payload, XenStoreTransaction? tx, CancellationToken ct)
    {
        var reply = await RequestAsync(type, payload, tx?.Id ?? 0, ct).ConfigureAwait(false);
        if (reply.Header.Type == XsMessageType.Error)
            throw new XenStoreException(reply.Error, type);
        return reply.Payload;
    }

    private static byte[] Strings(params string[] parts)
    {
        int len = 0;
        foreach (var p in parts)
            len += Encoding.UTF8.GetByteCount(p) + 1;
        var bytes = new byte[len];
        int at = 0;
        foreach (var p in parts)
        {
            at += Encoding.UTF8.GetBytes(p, bytes.AsSpan(at));
            bytes[at++] = 0;
        }
        return bytes;
    }

    private static List<string> SplitStrings(ReadOnlySpan<byte> payload)
    {
        var list = new List<string>();
        int at = 0;
        while (XsPayload.TryNext(payload, ref at, out var s))
            list.Add(Encoding.UTF8.GetString(s));
        return list;
    }

    private static string TrimNul(byte[] payload) => Encoding.UTF8.GetString(payload.AsSpan().TrimEnd((byte)0));

    // ---- Node operations ---------------------------------------------------------------------

    /// <summary>XS_READ: the node's value.</summary>
    public Task<byte[]> ReadAsync(string path, XenStoreTransaction? transaction = null, CancellationToken cancellationToken = default) =>
        CallAsync(XsMessageType.Read, Strings(path), transaction, cancellationToken);

    /// <summary>XS_READ as UTF-8 text.</summary>
    public async Task<string> ReadStringAsync(string path, XenStoreTransaction? transaction = null, CancellationToken cancellationToken = default) =>
        Encoding.UTF8.GetString(await ReadAsync(path, transaction, cancellationToken).ConfigureAwait(false));

    /// <summary>XS_READ that returns null when the node does not exist.</summary>
    public async Task<string?> TryReadStringAsync(string path, XenStoreTransaction? transaction = null, CancellationToken cancellationToken = default)
    {
        var reply = await RequestAsync(XsMessageType.Read, Strings(path), transaction?.Id ?? 0, cancellationToken).ConfigureAwait(false);
        if (reply.Error == XsError.ENOENT)
            return null;
        if (reply.Header.Type == XsMessageType.Error)
            throw new XenStoreException(reply.Error, XsMessageType.Read);
        return Encoding.UTF8.GetString(reply.Payload);
    }

    /// <summary>XS_WRITE: sets the value, creating the node and its missing parents.</summary>
    public Task WriteAsync(string path, ReadOnlyMemory<byte> value, XenStoreTransaction? transaction = null, CancellationToken cancellationToken = default)
    {
        int pathLen = Encoding.UTF8.GetByteCount(path);
        var payload = new byte[pathLen + 1 + value.Length];
        Encoding.UTF8.GetBytes(path, payload);
        value.Span.CopyTo(payload.AsSpan(pathLen + 1));
        return CallAsync(XsMessageType.Write, payload, transaction, cancellationToken);
    }

    /// <summary>XS_WRITE of UTF-8 text.</summary>
    public Task WriteAsync(string path, string value, XenStoreTransaction? transaction = null, CancellationToken cancellationToken = default) =>
        WriteAsync(path, Encoding.UTF8.GetBytes(value), transaction, cancellationToken);

    /// <summary>XS_MKDIR: makes sure the node exists.</summary>
    public Task MkdirAsync(string path, XenStoreTransaction? transaction = null, CancellationToken cancellationToken = default) =>
        CallAsync(XsMessageType.Mkdir, Strings(path), transaction, cancellationToken);

    /// <summary>XS_RM: removes the node and its subtree.</summary>
    public Task RemoveAsync(string path, XenStoreTransaction? transaction = null, CancellationToken cancellationToken = default) =>
        CallAsync(XsMessageType.Rm, Strings(path), transaction, cancellationToken);

    /// <summary>XS_DIRECTORY, falling back to XS_DIRECTORY_PART for lists over XENSTORE_PAYLOAD_MAX (as libxenstore does).</summary>
    public async Task<IReadOnlyList<string>> DirectoryAsync(string path, XenStoreTransaction? transaction = null, CancellationToken cancellationToken = default)
    {
        var reply = await RequestAsync(XsMessageType.Directory, Strings(path), transaction?.Id ?? 0, cancellationToken).ConfigureAwait(false);
        if (reply.Header.Type != XsMessageType.Error)
            return SplitStrings(reply.Payload);
        if (reply.Error != XsError.E2BIG)
            throw new XenStoreException(reply.Error, XsMessageType.Directory);
        for (int attempt = 0; attempt < 100; attempt++)
        {
            var result = new List<string>();
            string? generation = null;
            int offset = 0;
            bool restart = false;
            while (true)
            {
                var part = await CallAsync(XsMessageType.DirectoryPart, Strings(path, offset.ToString(CultureInfo.InvariantCulture)), transaction, cancellationToken).ConfigureAwait(false);
                int at = 0;
                XsPayload.TryNext(part, ref at, out var gen);
                string g = Encoding.ASCII.GetString(gen);
                if (generation is not null && g != generation)
                {
                    restart = true;
                    break;
                }
                generation = g;
                bool done = false;
                while (XsPayload.TryNext(part, ref at, out var name))
                {
                    if (name.IsEmpty)
                    {
                        done = true;
                        break;
                    }
                    result.Add(Encoding.UTF8.GetString(name));
                    offset += name.Length + 1;
                }
                if (done)
                    break;
            }
            if (!restart)
                return result;
        }
        throw new XenStoreException(XsError.EAGAIN, XsMessageType.DirectoryPart);
    }

    /// <summary>XS_GET_PERMS.</summary>
    public async Task<IReadOnlyList<XsPermission>> GetPermissionsAsync(string path, XenStoreTransaction? transaction = null, CancellationToken cancellationToken = default)
    {
        var payload = await CallAsync(XsMessageType.GetPerms, Strings(path), transaction, cancellationToken).ConfigureAwait(false);
        var list = new List<XsPermission>();
        int at = 0;
        while (XsPayload.TryNext(payload, ref at, out var text))
        {
            if (!XsPermission.TryParse(text, out var perm))
                throw new XenStoreException("malformed permission in GET_PERMS reply");
            list.Add(perm);
        }
        return list;
    }

    /// <summary>XS_SET_PERMS: the first entry is the owner and everyone's default.</summary>
    public Task SetPermissionsAsync(string path, IReadOnlyList<XsPermission> permissions, XenStoreTransaction? transaction = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(permissions);
        var parts = new string[permissions.Count + 1];
        parts[0] = path;
        for (int i = 0; i < permissions.Count; i++)
            parts[i + 1] = permissions[i].ToString();
        return CallAsync(XsMessageType.SetPerms, Strings(parts), transaction, cancellationToken);
    }

    // ---- Transactions ------------------------------------------------------------------------

    /// <summary>XS_TRANSACTION_START.</summary>
    public async Task<XenStoreTransaction> StartTransactionAsync(CancellationToken cancellationToken = default)
    {
        var payload = await CallAsync(XsMessageType.TransactionStart, new byte[] { 0 }, null, cancellationToken).ConfigureAwait(false);
        return new XenStoreTransaction(uint.Parse(TrimNul(payload), CultureInfo.InvariantCulture));
    }

    /// <summary>XS_TRANSACTION_END: commits (throws <see cref="XenStoreException"/> with EAGAIN on conflict) or aborts.</summary>
    public Task EndTransactionAsync(XenStoreTransaction transaction, bool commit, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(transaction);
        return CallAsync(XsMessageType.TransactionEnd, commit ? "T\0"u8.ToArray() : "F\0"u8.ToArray(), transaction, cancellationToken);
    }

    /// <summary>
    /// Runs <paramref name="body"/> in a transaction and commits it, starting over when the daemon reports
    /// EAGAIN (a conflicting change), up to <paramref name="maxAttempts"/> times.
    /// </summary>
    public async Task<T> TransactAsync<T>(Func<XenStoreTransaction, Task<T>> body, int maxAttempts = 1000, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(body);
        for (int attempt = 1; ; attempt++)
        {
            var tx = await StartTransactionAsync(cancellationToken).ConfigureAwait(false);
            T result;
            try
            {
                result = await body(tx).ConfigureAwait(false);
            }
            catch (XenStoreException e) when (e.Error == XsError.EAGAIN && attempt < maxAttempts)
            {
                await EndTransactionAsync(tx, false, cancellationToken).ConfigureAwait(false);
                continue;
            }
            catch
            {
                try
                {
                    await EndTransactionAsync(tx, false, cancellationToken).ConfigureAwait(false);
                }
                catch (XenStoreException)
                {
                }
                throw;
            }
            try
            {
                await EndTransactionAsync(tx, true, cancellationToken).ConfigureAwait(false);
                return result;
            }
            catch (XenStoreException e) when (e.Error == XsError.EAGAIN && attempt < maxAttempts)
            {
                Retries++;
            }
        }
    }

    /// <summary>How many times <see cref="TransactAsync"/> retried after EAGAIN.</summary>
    public long Retries { get; private set; }

    // ---- Watches -----------------------------------------------------------------------------

    /// <summary>
    /// The most events a watch keeps that its consumer has not taken yet (default 4096, above the 1024 nodes a guest's
    /// transaction may touch). Past it they are replaced by one event for the watched path itself, meaning "look again
    /// at the whole subtree", and further events are dropped until the consumer has taken that one: a guest that keeps
    /// changing nodes a backend watches cannot grow the backend's memory without end (XSA-349). Counted by
    /// <see cref="Daemon.XenStoreMetrics.CollapsedWatchBacklogs"/>. Applies to watches started after it is set.
    /// </summary>
    public int MaxPendingWatchEvents
    {
        get => _maxPendingWatchEvents;
        set => _maxPendingWatchEvents = value >= 1 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "at least one event");
    }

    /// <summary>
    /// XS_WATCH on <paramref name="path"/> (a subtree, or <c>@introduceDomain</c>/<c>@releaseDomain</c>): yields
    /// events until the enumeration ends or is cancelled, then sends XS_UNWATCH. The first event is the
    /// daemon's initial one, with the watched path. A consumer more than <see cref="MaxPendingWatchEvents"/> behind
    /// gets one event for <paramref name="path"/> in place of the events it missed.
    /// </summary>
    public async IAsyncEnumerable<XenStoreWatchEvent> WatchAsync(string path, string? token = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        token ??= "vmmkit-" + Interlocked.Increment(ref _nextToken).ToString(CultureInfo.InvariantCulture);
        var backlog = new XenStoreWatchBacklog(path, token, _maxPendingWatchEvents);
        if (!_watches.TryAdd(token, backlog))
            throw new ArgumentException($"token '{token}' is already watched", nameof(token));
        try
        {
            await CallAsync(XsMessageType.Watch, Strings(path, token), null, cancellationToken).ConfigureAwait(false);
            while (true)
            {
                XenStoreWatchEvent? e;
                try
                {
                    e = await backlog.TakeAsync(cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    yield break;
                }
                if (e is null)
                    yield break;
                yield return e.Value;
            }
        }
        finally
        {
            _watches.TryRemove(token, out _);
            if (!_closing.IsCancellationRequested)
            {
                try
                {
                    await RequestAsync(XsMessageType.Unwatch, Strings(path, token)).ConfigureAwait(false);
                }
                catch (XenStoreException)
                {
                }
            }
        }
    }

    /// <summary>XS_RESET_WATCHES: drops every watch and transaction of this connection.</summary>
    public Task ResetWatchesAsync(CancellationToken cancellationToken = default) =>
        CallAsync(XsMessageType.ResetWatches, new byte[] { 0 }, null, cancellationToken);

    // ---- Domains and control -----------------------------------------------------------------

    /// <summary>XS_INTRODUCE <c>domid|mfn|evtchn|</c>.</summary>
    public Task IntroduceAsync(uint domainId, long mfn, uint eventChannel, CancellationToken cancellationToken = default) =>
        CallAsync(XsMessageType.Introduce, Strings(domainId.ToString(CultureInfo.InvariantCulture), mfn.ToString(CultureInfo.InvariantCulture), eventChannel.ToString(CultureInfo.InvariantCulture)), null, cancellationToken);

    /// <summary>XS_RELEASE.</summary>
    public Task ReleaseAsync(uint domainId, CancellationToken cancellationToken = default) =>
        CallAsync(XsMessageType.Release, Strings(domainId.ToString(CultureInfo.InvariantCulture)), null, cancellationToken);

    /// <summary>XS_RESUME.</summary>
    public Task ResumeAsync(uint domainId, CancellationToken cancellationToken = default) =>
        CallAsync(XsMessageType.Resume, Strings(domainId.ToString(CultureInfo.InvariantCulture)), null, cancellationToken);

    /// <summary>XS_SET_TARGET: <paramref name="domainId"/> may act for <paramref name="targetDomainId"/>.</summary>
    public Task SetTargetAsync(uint domainId, uint targetDomainId, CancellationToken cancellationToken = default) =>
        CallAsync(XsMessageType.SetTarget, Strings(domainId.ToString(CultureInfo.InvariantCulture), targetDomainId.ToString(CultureInfo.InvariantCulture)), null, cancellationToken);

    /// <summary>XS_GET_DOMAIN_PATH.</summary>
    public async Task<string> GetDomainPathAsync(uint domainId, CancellationToken cancellationToken = default) =>
        TrimNul(await CallAsync(XsMessageType.GetDomainPath, Strings(domainId.ToString(CultureInfo.InvariantCulture)), null, cancellationToken).ConfigureAwait(false));

    /// <summary>XS_IS_DOMAIN_INTRODUCED.</summary>
    public async Task<bool> IsDomainIntroducedAsync(uint domainId, CancellationToken cancellationToken = default) =>
        TrimNul(await CallAsync(XsMessageType.IsDomainIntroduced, Strings(domainId.ToString(CultureInfo.InvariantCulture)), null, cancellationToken).ConfigureAwait(false)) == "T";

    /// <summary>XS_CONTROL with a command and its arguments; returns the reply text.</summary>
    public async Task<string> ControlAsync(string command, params string[] arguments)
    {
        var parts = new string[arguments.Length + 1];
        parts[0] = command;
        arguments.CopyTo(parts, 1);
        return TrimNul(await CallAsync(XsMessageType.Control, Strings(parts), null, default).ConfigureAwait(false));
    }

    /// <summary>XS_GET_QUOTA of a global (no <paramref name="domainId"/>) or per-domain quota.</summary>
    public async Task<long> GetQuotaAsync(string name, uint? domainId = null, CancellationToken cancellationToken = default)
    {
        var payload = domainId is uint d ? Strings(d.ToString(CultureInfo.InvariantCulture), name) : Strings(name);
        return long.Parse(TrimNul(await CallAsync(XsMessageType.GetQuota, payload, null, cancellationToken).ConfigureAwait(false)), CultureInfo.InvariantCulture);
    }

    /// <summary>XS_SET_QUOTA of a global (no <paramref name="domainId"/>) or per-domain quota.</summary>
    public Task SetQuotaAsync(string name, long value, uint? domainId = null, CancellationToken cancellationToken = default)
    {
        string v = value.ToString(CultureInfo.InvariantCulture);
        var payload = domainId is uint d ? Strings(d.ToString(CultureInfo.InvariantCulture), name, v) : Strings(name, v);
        return CallAsync(XsMessageType.SetQuota, payload, null, cancellationToken);
    }

    /// <summary>XS_GET_FEATURE: the server's feature bits, or a domain's.</summary>
    public async Task<uint> GetFeatureAsync(uint? domainId = null, CancellationToken cancellationToken = default)
    {
        var payload = domainId is uint d ? Strings(d.ToString(CultureInfo.InvariantCulture)) : [];
        return uint.Parse(TrimNul(await CallAsync(XsMessageType.GetFeature, payload, null, cancellationToken).ConfigureAwait(false)), CultureInfo.InvariantCulture);
    }

    /// <summary>XS_SET_FEATURE for a domain.</summary>
    public Task SetFeatureAsync(uint domainId, uint features, CancellationToken cancellationToken = default) =>
        CallAsync(XsMessageType.SetFeature, Strings(domainId.ToString(CultureInfo.InvariantCulture), features.ToString(CultureInfo.InvariantCulture)), null, cancellationToken);

    // ---- Receive loop ------------------------------------------------------------------------

    private async Task ReadLoopAsync()
    {
        var buffer = new byte[64 * 1024];
        int start = 0, end = 0;
        try
        {
            while (!_closing.IsCancellationRequested)
            {
                int n = await _stream.ReadAsync(buffer.AsMemory(end), _closing.Token).ConfigureAwait(false);
                if (n == 0)
                    break;
                end += n;
                while (true)
                {
                    var status = XsFrameReader.TryRead(buffer.AsSpan(start, end - start), out var header, out var payload, out int consumed);
                    if (status == XsFrameStatus.NeedMore)
                        break;
                    if (status == XsFrameStatus.Oversized)
                        throw new IOException("daemon sent a payload over XENSTORE_PAYLOAD_MAX");
                    Dispatch(header, payload);
                    start += consumed;
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
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or OperationCanceledException or SocketException)
        {
        }
        finally
        {
            var lost = new XenStoreException("XenStore connection closed");
            foreach (var id in _pending.Keys)
            {
                if (_pending.TryRemove(id, out var tcs))
                    tcs.TrySetException(lost);
            }
            foreach (var w in _watches.Values)
                w.Complete();
        }
    }

    private void Dispatch(in XsHeader header, ReadOnlySpan<byte> payload)
    {
        if (header.Type == XsMessageType.WatchEvent)
        {
            int at = 0;
            if (XsPayload.TryNext(payload, ref at, out var path) && XsPayload.TryNext(payload, ref at, out var token)
                && _watches.TryGetValue(Encoding.UTF8.GetString(token), out var backlog))
                backlog.Post(Encoding.UTF8.GetString(path));
            return;
        }
        if (_pending.TryRemove(header.RequestId, out var tcs))
            tcs.TrySetResult(new XenStoreReply(header, payload.ToArray()));
    }

    /// <summary>Closes the connection; pending requests fail and watch enumerations end.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_closing.IsCancellationRequested)
            return;
        _closing.Cancel();
        await _stream.DisposeAsync().ConfigureAwait(false);
        try
        {
            await _reader.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        _writeLock.Dispose();
        _closing.Dispose();
    }
}
