using VmmKit.XenStore.Store;
using VmmKit.XenStore.Watches;

namespace VmmKit.XenStore.Daemon;

/// <summary>
/// One client of the daemon (xenstored's <c>struct connection</c>): identity, watches, open transactions
/// and the output queue. All fields except the output queue are guarded by the daemon's store lock.
/// </summary>
internal sealed class XsConnection
{
    private int _draining;
    private TaskCompletionSource? _drainWaiter;
    private uint _nextTransactionId = 1;

    public XsConnection(int id, XsConnectionKind kind, uint domainId, Stream? transport)
    {
        Id = id;
        Kind = kind;
        DomainId = domainId;
        Transport = transport;
    }

    public int Id { get; }

    public XsConnectionKind Kind { get; }

    public uint DomainId { get; }

    /// <summary>Dom0 and socket clients are privileged (xenstored's <c>domain_is_unprivileged</c> is false).</summary>
    public bool Privileged => DomainId == 0;

    /// <summary>The domain this one acts for (XS_SET_TARGET).</summary>
    public uint? Target { get; set; }

    public XsCaller Caller => new(DomainId, Privileged, Target);

    public Stream? Transport { get; set; }

    /// <summary>The socket under <see cref="Transport"/> for <see cref="XsConnectionKind.Socket"/> clients (handed over on live update).</summary>
    public System.Net.Sockets.Socket? Socket { get; set; }

    /// <summary>Bytes read but not yet handled when the connection was detached for a live update.</summary>
    public byte[]? PendingInput { get; set; }

    /// <summary>The duplicated socket fd once detached for a live update (-1 before).</summary>
    public int HandoverFd { get; set; } = -1;

    public List<XsWatch> Watches { get; } = [];

    public Dictionary<uint, XsTransaction> Transactions { get; } = [];

    public XsOutputQueue Output { get; } = new();

    public bool Closed { get; private set; }

    public uint AllocateTransactionId()
    {
        uint id;
        do
        {
            id = _nextTransactionId++;
        }
        while (id == 0 || Transactions.ContainsKey(id));
        return id;
    }

    internal uint NextTransactionId
    {
        get => _nextTransactionId;
        set => _nextTransactionId = value;
    }

    /// <summary>Writes queued output. Only one writer runs at a time; a concurrent caller returns at once.</summary>
    public async Task DrainAsync()
    {
        while (true)
        {
            var transport = Transport;
            if (Closed || transport is null)
                return;
            if (Interlocked.CompareExchange(ref _draining, 1, 0) != 0)
                return;
            try
            {
                while (Output.TryTake(out var buffer, out int length))
                {
                    await transport.WriteAsync(buffer.AsMemory(0, length)).ConfigureAwait(false);
                    Output.Return(buffer);
                }
                await transport.FlushAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException or OperationCanceledException or System.Net.Sockets.SocketException)
            {
                Close();
                return;
            }
            finally
            {
                Volatile.Write(ref _draining, 0);
                Interlocked.Exchange(ref _drainWaiter, null)?.TrySetResult();
            }
            if (!Output.HasPending)
                return;
        }
    }

    /// <summary>
    /// Writes what is queued and returns once nothing is queued or being written, even when the write in
    /// flight was started by someone else (another client's watch event). domain.c domain_can_read: an
    /// unprivileged domain with output outstanding is not read from until it takes it.
    /// </summary>
    public async Task WaitForOutputAsync(CancellationToken cancellationToken)
    {
        while (!Closed)
        {
            await DrainAsync().ConfigureAwait(false);
            if (Volatile.Read(ref _draining) == 0)
            {
                if (!Output.HasPending || Transport is null)
                    return;
                continue;
            }
            // Another writer holds the connection: wait for the end of its pass (no allocation unless someone waits).
            var waiter = Volatile.Read(ref _drainWaiter);
            if (waiter is null)
            {
                var fresh = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                waiter = Interlocked.CompareExchange(ref _drainWaiter, fresh, null) ?? fresh;
            }
            // The writer may have finished before the waiter was in place; then there is nobody to wake us.
            if (Volatile.Read(ref _draining) != 0)
                await waiter.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Writes what is queued and waits until no write is in flight, for at most <paramref name="timeout"/>.
    /// False when a write is still stuck then (the client stopped reading).
    /// </summary>
    public async Task<bool> SettleOutputAsync(TimeSpan timeout)
    {
        long deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        while (true)
        {
            await DrainAsync().ConfigureAwait(false);
            bool writing = Volatile.Read(ref _draining) != 0;
            if (Closed || (!writing && (!Output.HasPending || Transport is null)))
                return true;
            if (Environment.TickCount64 >= deadline)
                return false;
            await Task.Delay(5).ConfigureAwait(false);
        }
    }

    public void Close()
    {
        if (Closed)
            return;
        Closed = true;
        try
        {
            Transport?.Dispose();
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
        }
    }
}
