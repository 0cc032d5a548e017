using System.Buffers.Binary;
using System.Net.Sockets;
using System.Threading.Channels;

namespace VmmKit.ReferenceHypervisor.Host;

/// <summary>
/// One connected Dom0: a reader thread that frames its requests (and drops the connection at the first malformed
/// header), and a writer thread that sends replies and EVENT messages in order, so the scheduler never waits on Dom0.
/// </summary>
/// <remarks>
/// What a Dom0 can make the hypervisor hold is bounded, however slowly it reads (docs/articles/dom0-abi.md, "Flow
/// control"). At most <see cref="MaxRequestsInFlight"/> requests are taken before their replies have been written to the
/// socket: past that the reader stops reading, so a Dom0 that sends without reading fills its own socket buffer and
/// blocks, as a process blocks in a privcmd ioctl. EVENT messages are bounded by <see cref="MaxQueuedEvents"/>: when that
/// many are waiting, <see cref="TrySendEvent"/> refuses (the overflow flag of Linux's evtchn ring) and the port stays
/// pending in domain 0's shared_info, where further firings coalesce into its one bit; <see cref="Drained"/> then asks
/// for it again once the writer has caught up, so no event is lost.
/// </remarks>
internal sealed class Dom0Session
{
    /// <summary>Requests taken from Dom0 whose replies are not written yet, at most.</summary>
    public const int MaxRequestsInFlight = 64;

    /// <summary>EVENT messages waiting for the writer, at most (domain 0's ports, 64 * 64 under the 2-level ABI).</summary>
    public const int MaxQueuedEvents = 4096;

    private readonly Socket _socket;
    private readonly Channel<byte[]> _outgoing = Channel.CreateUnbounded<byte[]>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Action<Dom0Session, Dom0MessageType, ulong, byte[]> _received;
    private readonly Action<Dom0Session> _closed;
    private readonly SemaphoreSlim _credits = new(MaxRequestsInFlight, MaxRequestsInFlight);
    private readonly CancellationTokenSource _closing = new();
    private int _queuedEvents;
    private int _overflow;
    private int _isClosed;

    /// <summary>Wraps an accepted connection; <see cref="Start"/> begins reading.</summary>
    public Dom0Session(Socket socket, Action<Dom0Session, Dom0MessageType, ulong, byte[]> received, Action<Dom0Session> closed)
    {
        _socket = socket;
        _received = received;
        _closed = closed;
    }

    /// <summary>The connected socket (for the WELCOME message's SCM_RIGHTS).</summary>
    public Socket Socket => _socket;

    /// <summary>True once the connection is closed.</summary>
    public bool IsClosed => Volatile.Read(ref _isClosed) != 0;

    /// <summary>Starts the reader and writer threads.</summary>
    public void Start()
    {
        new Thread(ReadLoop) { IsBackground = true, Name = "dom0-channel-reader" }.Start();
        new Thread(WriteLoop) { IsBackground = true, Name = "dom0-channel-writer" }.Start();
    }

    /// <summary>Called on the writer thread when EVENT messages were refused and the queue has drained to half.</summary>
    public Action? Drained { get; set; }

    /// <summary>True while EVENT messages are refused (the queue was full and has not drained to half yet).</summary>
    public bool IsOverflowing => Volatile.Read(ref _overflow) != 0;

    /// <summary>Queues a reply for Dom0 (one of the requests in flight).</summary>
    public void Send(Dom0MessageType type, ulong id, ReadOnlySpan<byte> payload) => _outgoing.Writer.TryWrite(Frame(type, id, payload));

    /// <summary>
    /// Queues an EVENT message, unless <see cref="MaxQueuedEvents"/> are already waiting: then false, the overflow flag
    /// is set, and <see cref="Drained"/> runs once the writer has sent half of them.
    /// </summary>
    public bool TrySendEvent(ReadOnlySpan<byte> payload)
    {
        if (Volatile.Read(ref _overflow) != 0)
            return false;
        if (Interlocked.Increment(ref _queuedEvents) > MaxQueuedEvents)
        {
            Interlocked.Decrement(ref _queuedEvents);
            Volatile.Write(ref _overflow, 1);
            return false;
        }

        _outgoing.Writer.TryWrite(Frame(Dom0MessageType.Event, 0, payload));
        return true;
    }

    private static byte[] Frame(Dom0MessageType type, ulong id, ReadOnlySpan<byte> payload)
    {
        var message = new byte[Dom0Wire.HeaderSize + payload.Length];
        Dom0Wire.WriteHeader(message, type, id, payload.Length);
        payload.CopyTo(message.AsSpan(Dom0Wire.HeaderSize));
        return message;
    }

    /// <summary>Drops the connection (idempotent); the owner hears of it once.</summary>
    public void Close()
    {
        if (Interlocked.Exchange(ref _isClosed, 1) != 0)
            return;
        _closing.Cancel();
        _outgoing.Writer.TryComplete();
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (SocketException)
        {
            // Already gone.
        }

        _socket.Dispose();
        _closed(this);
    }

    private void ReadLoop()
    {
        var header = new byte[Dom0Wire.HeaderSize];
        try
        {
            while (!IsClosed)
            {
                _credits.Wait(_closing.Token);   // flow control: a reply must leave before the next request past the limit
                if (!ReadExactly(header))
                    break;
                if (!Dom0Wire.TryReadRequestHeader(header, out var type, out ulong id, out int length))
                    break;   // a malformed message: the connection goes, the hypervisor carries on
                var payload = new byte[length];
                if (!ReadExactly(payload))
                    break;
                _received(this, type, id, payload);
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException)
        {
            // The connection went away.
        }

        Close();
    }

    private bool ReadExactly(byte[] buffer)
    {
        int done = 0;
        while (done < buffer.Length)
        {
            int n = _socket.Receive(buffer, done, buffer.Length - done, SocketFlags.None);
            if (n == 0)
                return false;
            done += n;
        }

        return true;
    }

    private void WriteLoop()
    {
        try
        {
            while (_outgoing.Reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
            {
                while (_outgoing.Reader.TryRead(out var message))
                {
                    _socket.Send(message);
                    if ((BinaryPrimitives.ReadUInt16LittleEndian(message.AsSpan(6)) & Dom0Wire.ReplyBit) != 0)
                        _credits.Release();
                    else if (Interlocked.Decrement(ref _queuedEvents) <= MaxQueuedEvents / 2 && Volatile.Read(ref _overflow) != 0
                             && Interlocked.Exchange(ref _overflow, 0) != 0)
                        Drained?.Invoke();
                }
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            Close();
        }
    }
}
