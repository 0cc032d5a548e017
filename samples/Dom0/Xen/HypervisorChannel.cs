using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net.Sockets;

namespace VmmKit.Dom0.Xen;

/// <summary>
/// Dom0's connection to the hypervisor (docs/dom0-abi.md): the Unix socket <c>RUNDIR/hypervisor.sock</c>, the machine's
/// memory mapped from the file descriptor the hypervisor sends at connect (guest frames are shared, never copied), and
/// a reader thread that matches replies to requests and hands EVENT messages to <see cref="EventReceived"/>. Requests may
/// come from any thread; each waits for its own reply.
/// </summary>
public sealed unsafe class HypervisorChannel : IDisposable
{
    /// <summary>"VKD0" in memory order.</summary>
    public const uint Magic = 0x30444B56;

    /// <summary>The protocol version this client speaks.</summary>
    public const ushort Version = 2;

    /// <summary>Header size in bytes.</summary>
    public const int HeaderSize = 24;

    /// <summary>Frames in one MMAPBATCH or UNMAP.</summary>
    public const int MaxBatch = 1024;

    private readonly Socket _socket;
    private readonly ConcurrentDictionary<ulong, TaskCompletionSource<byte[]>> _pending = new();
    private readonly object _sendLock = new();
    private readonly byte* _machine;
    private readonly ConcurrentDictionary<uint, Action<uint>> _portOwners = new();
    private readonly ConcurrentDictionary<uint, bool> _unclaimed = new();
    private long _nextId;
    private int _disposed;

    private HypervisorChannel(Socket socket, byte* machine, ulong machineBytes, ulong dom0FirstFrame, ulong dom0Pages, ulong sharedInfoFrame)
    {
        _socket = socket;
        _machine = machine;
        MachineBytes = machineBytes;
        Dom0FirstFrame = dom0FirstFrame;
        Dom0Pages = dom0Pages;
        SharedInfoFrame = sharedInfoFrame;
        new Thread(ReadLoop) { IsBackground = true, Name = "hypervisor-channel" }.Start();
    }

    /// <summary>Size of machine memory (the memory file).</summary>
    public ulong MachineBytes { get; }

    /// <summary>The machine frame of Dom0's guest-physical page 0 (Dom0's RAM is machine-contiguous).</summary>
    public ulong Dom0FirstFrame { get; }

    /// <summary>Dom0's RAM in pages.</summary>
    public ulong Dom0Pages { get; }

    /// <summary>The machine frame of Dom0's shared_info page.</summary>
    public ulong SharedInfoFrame { get; }

    /// <summary>Called on the reader thread for each EVENT message (a port of domain 0 that fired).</summary>
    public event Action<uint>? EventReceived;

    /// <summary>Called once when the hypervisor closes the channel (or it breaks).</summary>
    public event Action? Disconnected;

    /// <summary>Connects to the hypervisor at <paramref name="socketPath"/> and maps machine memory.</summary>
    /// <exception cref="IOException">No hypervisor there, or it refused this Dom0 (another one is connected).</exception>
    public static HypervisorChannel Connect(string socketPath)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Connect(new UnixDomainSocketEndPoint(socketPath));
            Span<byte> welcome = stackalloc byte[HeaderSize + 32];
            if (!Native.TryReceiveWithFd(socket.Handle, welcome, out int fd) || fd < 0)
                throw new IOException($"the hypervisor at {socketPath} sent no WELCOME (another Dom0 is connected?)");
            try
            {
                if (BinaryPrimitives.ReadUInt32LittleEndian(welcome) != Magic || BinaryPrimitives.ReadUInt16LittleEndian(welcome[4..]) != Version
                    || BinaryPrimitives.ReadUInt16LittleEndian(welcome[6..]) != (ushort)Dom0MessageType.Welcome)
                    throw new IOException("not a version-2 WELCOME from the hypervisor");
                var p = welcome[HeaderSize..];
                ulong bytes = BinaryPrimitives.ReadUInt64LittleEndian(p);
                byte* machine = Native.MapShared(fd, bytes);
                return new HypervisorChannel(socket, machine, bytes, BinaryPrimitives.ReadUInt64LittleEndian(p[8..]),
                    BinaryPrimitives.ReadUInt64LittleEndian(p[16..]), BinaryPrimitives.ReadUInt64LittleEndian(p[24..]));
            }
            finally
            {
                Native.CloseFd(fd);   // the mapping keeps the file alive
            }
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>A machine frame's bytes, shared with the hypervisor and the guest that owns it.</summary>
    /// <param name="mfn">A machine frame number below <see cref="MachineBytes"/> / 4096.</param>
    public Span<byte> Frame(ulong mfn)
    {
        if (mfn >= MachineBytes >> 12)
            throw new ArgumentOutOfRangeException(nameof(mfn), mfn, "outside machine memory");
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        return new Span<byte>(_machine + (mfn << 12), 4096);
    }

    /// <summary>A pointer to machine frame <paramref name="mfn"/> (valid while the channel is open).</summary>
    public byte* FramePointer(ulong mfn)
    {
        if (mfn >= MachineBytes >> 12)
            throw new ArgumentOutOfRangeException(nameof(mfn), mfn, "outside machine memory");
        return _machine + (mfn << 12);
    }

    /// <summary>Dom0's own memory at guest-physical <paramref name="gpa"/>, <paramref name="length"/> bytes.</summary>
    public Span<byte> Dom0Memory(ulong gpa, int length)
    {
        if (gpa + (ulong)length > Dom0Pages << 12)
            throw new ArgumentOutOfRangeException(nameof(gpa), gpa, "outside Dom0's memory");
        return new Span<byte>(_machine + (Dom0FirstFrame << 12) + gpa, length);
    }

    /// <summary>Sends a request and waits for its reply's payload.</summary>
    /// <exception cref="IOException">The channel is closed.</exception>
    public byte[] Request(Dom0MessageType type, ReadOnlySpan<byte> payload)
    {
        ulong id = (ulong)Interlocked.Increment(ref _nextId);
        var reply = new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[id] = reply;
        var message = new byte[HeaderSize + payload.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(message, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(message.AsSpan(4), Version);
        BinaryPrimitives.WriteUInt16LittleEndian(message.AsSpan(6), (ushort)type);
        BinaryPrimitives.WriteUInt64LittleEndian(message.AsSpan(8), id);
        BinaryPrimitives.WriteUInt32LittleEndian(message.AsSpan(16), (uint)payload.Length);
        payload.CopyTo(message.AsSpan(HeaderSize));
        try
        {
            lock (_sendLock)
                _socket.Send(message);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            _pending.TryRemove(id, out _);
            throw new IOException("the hypervisor channel is closed", e);
        }

        try
        {
            return reply.Task.GetAwaiter().GetResult();
        }
        finally
        {
            _pending.TryRemove(id, out _);
        }
    }

    /// <summary>Sends raw bytes (for tests of the hypervisor's checks).</summary>
    public void SendRaw(ReadOnlySpan<byte> bytes)
    {
        lock (_sendLock)
            _socket.Send(bytes);
    }

    /// <summary>True once the hypervisor has closed the channel.</summary>
    public bool IsClosed { get; private set; }

    private void ReadLoop()
    {
        var header = new byte[HeaderSize];
        try
        {
            while (ReadExactly(header))
            {
                var type = (Dom0MessageType)(BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(6)) & 0x7FFF);
                bool isReply = (BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(6)) & 0x8000) != 0;
                ulong id = BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(8));
                uint length = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(16));
                if (BinaryPrimitives.ReadUInt32LittleEndian(header) != Magic || length > 1 << 20)
                    break;
                var payload = new byte[length];
                if (!ReadExactly(payload))
                    break;
                if (isReply && _pending.TryGetValue(id, out var waiter))
                    waiter.TrySetResult(payload);
                else if (!isReply && type == Dom0MessageType.Event && payload.Length >= 4)
                    DeliverEvent(BinaryPrimitives.ReadUInt32LittleEndian(payload));
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Closed.
        }

        IsClosed = true;
        foreach (var w in _pending.Values)
            w.TrySetException(new IOException("the hypervisor channel closed"));
        Disconnected?.Invoke();
    }

    private void DeliverEvent(uint port)
    {
        EventReceived?.Invoke(port);
        if (_portOwners.TryGetValue(port, out var owner))
        {
            owner(port);
            return;
        }

        // Fired before its handle recorded the port (bind_interdomain sets the new port pending at once): kept for it.
        _unclaimed[port] = true;
        if (_portOwners.TryGetValue(port, out var late) && _unclaimed.TryRemove(port, out _))
            late(port);
    }

    /// <summary>Routes EVENT messages for <paramref name="port"/> to <paramref name="owner"/> (an evtchn handle), or stops (null).</summary>
    internal void SetPortOwner(uint port, Action<uint>? owner)
    {
        if (owner is null)
        {
            _portOwners.TryRemove(port, out _);
            _unclaimed.TryRemove(port, out _);
            return;
        }

        _portOwners[port] = owner;
        if (_unclaimed.TryRemove(port, out _))
            owner(port);
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

    /// <summary>Closes the channel and unmaps machine memory.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (SocketException)
        {
        }

        _socket.Dispose();
        Native.Unmap(_machine, MachineBytes);
    }
}
