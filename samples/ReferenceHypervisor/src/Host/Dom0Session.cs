using System.Net.Sockets;
using System.Threading.Channels;

namespace VmmKit.ReferenceHypervisor.Host;

/// <summary>
/// One connected Dom0: a reader thread that frames its requests (and drops the connection at the first malformed
/// header), and a writer thread that sends replies and EVENT messages in order, so the scheduler never waits on Dom0.
/// </summary>
internal sealed class Dom0Session
{
    private readonly Socket _socket;
    private readonly Channel<byte[]> _outgoing = Channel.CreateUnbounded<byte[]>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Action<Dom0Session, Dom0MessageType, ulong, byte[]> _received;
    private readonly Action<Dom0Session> _closed;
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

    /// <summary>Queues a message for Dom0.</summary>
    public void Send(Dom0MessageType type, ulong id, ReadOnlySpan<byte> payload)
    {
        var message = new byte[Dom0Wire.HeaderSize + payload.Length];
        Dom0Wire.WriteHeader(message, type, id, payload.Length);
        payload.CopyTo(message.AsSpan(Dom0Wire.HeaderSize));
        _outgoing.Writer.TryWrite(message);
    }

    /// <summary>Drops the connection (idempotent); the owner hears of it once.</summary>
    public void Close()
    {
        if (Interlocked.Exchange(ref _isClosed, 1) != 0)
            return;
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
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
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
                    _socket.Send(message);
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            Close();
        }
    }
}
