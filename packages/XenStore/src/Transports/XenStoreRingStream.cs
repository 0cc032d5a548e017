using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Transports;

/// <summary>
/// A byte stream over one end of a <c>struct xenstore_domain_interface</c> ring page (xs_wire.h). Indexes are
/// free-running 32-bit counters masked with <c>MASK_XENSTORE_IDX</c>; data is copied before the producer
/// index is published and read after it is observed (full barriers, as the Xen ring macros require). A
/// peer that reports more than <c>XENSTORE_RING_SIZE</c> bytes outstanding is corrupt: the server sets
/// <c>error = XENSTORE_ERROR_RINGIDX</c> and the stream fails. Call <see cref="Signal"/> when the peer's
/// event-channel notification arrives.
/// </summary>
public sealed class XenStoreRingStream : Stream
{
    private const int Mask = XsConstants.RingSize - 1;
    private readonly IXenStoreRingPage _page;
    private readonly IXenStoreEventNotifier _notifier;
    private readonly SemaphoreSlim _readable = new(0, 1);
    private readonly SemaphoreSlim _writable = new(0, 1);
    private readonly int _inRing, _inCons, _inProd, _outRing, _outCons, _outProd;
    // Orders a reset of the indexes (reconnect) against the writer's update of the output indexes.
    private readonly Lock _indexes = new();
    private int _resets;
    private volatile bool _disposed;

    /// <summary>Creates the <paramref name="role"/> end of the ring in <paramref name="page"/>.</summary>
    public XenStoreRingStream(IXenStoreRingPage page, IXenStoreEventNotifier notifier, XenStoreRingRole role)
    {
        ArgumentNullException.ThrowIfNull(page);
        ArgumentNullException.ThrowIfNull(notifier);
        if (page.Span.Length < XenStoreDomainInterface.Size)
            throw new ArgumentException("the page is smaller than struct xenstore_domain_interface", nameof(page));
        _page = page;
        _notifier = notifier;
        Role = role;
        if (role == XenStoreRingRole.Server)
        {
            (_inRing, _inCons, _inProd) = (XenStoreDomainInterface.Req, XenStoreDomainInterface.ReqCons, XenStoreDomainInterface.ReqProd);
            (_outRing, _outCons, _outProd) = (XenStoreDomainInterface.Rsp, XenStoreDomainInterface.RspCons, XenStoreDomainInterface.RspProd);
        }
        else
        {
            (_inRing, _inCons, _inProd) = (XenStoreDomainInterface.Rsp, XenStoreDomainInterface.RspCons, XenStoreDomainInterface.RspProd);
            (_outRing, _outCons, _outProd) = (XenStoreDomainInterface.Req, XenStoreDomainInterface.ReqCons, XenStoreDomainInterface.ReqProd);
        }
    }

    /// <summary>Which end this stream is.</summary>
    public XenStoreRingRole Role { get; }

    /// <summary>Raised (server end) when the guest asks for a reconnect (<c>connection = XENSTORE_RECONNECT</c>), after the rings are reset.</summary>
    public event Action? Reconnected;

    /// <summary>Publishes the server's features and the connected state (what xenstored does on INTRODUCE).</summary>
    public void InitializeServer(uint features)
    {
        WriteField(XenStoreDomainInterface.ServerFeatures, features);
        WriteField(XenStoreDomainInterface.Connection, XsConstants.Connected);
        WriteField(XenStoreDomainInterface.Error, XsConstants.ErrorNone);
    }

    /// <summary>The peer notified us: wake a waiting reader or writer.</summary>
    public void Signal()
    {
        Release(_readable);
        Release(_writable);
    }

    private static void Release(SemaphoreSlim s)
    {
        try
        {
            if (s.CurrentCount == 0)
                s.Release();
        }
        catch (SemaphoreFullException)
        {
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private ref uint Field(int offset) => ref Unsafe.As<byte, uint>(ref MemoryMarshal.GetReference(_page.Span[offset..(offset + 4)]));

    private uint ReadField(int offset) => Volatile.Read(ref Field(offset));

    private void WriteField(int offset, uint value) => Volatile.Write(ref Field(offset), value);

    /// <summary>The page's <c>error</c> field.</summary>
    public uint Error => ReadField(XenStoreDomainInterface.Error);

    /// <summary>Reconnects done so far (server end): input read before the count changed belongs to the old connection.</summary>
    internal int Resets => Volatile.Read(ref _resets);

    /// <summary>Server end: the guest asked for a reconnect that is not done yet (it ignores the rings meanwhile).</summary>
    private bool ReconnectRequested =>
        Role == XenStoreRingRole.Server && ReadField(XenStoreDomainInterface.Connection) == XsConstants.Reconnect;

    /// <summary>Does the reconnect the guest asked for, if it did; true when it was done.</summary>
    internal bool CheckReconnect()
    {
        if (!ReconnectRequested)
            return false;
        // The guest asked to start over: empty both rings, forget the connection's watches and transactions,
        // and only then acknowledge (domain.c: domain_conn_reset before connection = XENSTORE_CONNECTED), so a
        // guest that sees CONNECTED finds the reset done. The writer writes nothing while the request stands.
        lock (_indexes)
        {
            WriteField(XenStoreDomainInterface.ReqCons, 0);
            WriteField(XenStoreDomainInterface.ReqProd, 0);
            WriteField(XenStoreDomainInterface.RspCons, 0);
            WriteField(XenStoreDomainInterface.RspProd, 0);
            Interlocked.Increment(ref _resets);
        }
        Reconnected?.Invoke();
        Interlocked.MemoryBarrier();
        WriteField(XenStoreDomainInterface.Connection, XsConstants.Connected);
        _notifier.Notify();
        return true;
    }

    /// <summary>
    /// Server end, on a repeated XS_INTRODUCE (domain.c do_introduce, domain_conn_reset): zeroes the four ring
    /// indexes (output and input partly transferred belong to the old connection) and, if the guest had asked
    /// for a reconnect, answers CONNECTED and notifies it.
    /// </summary>
    internal void ResetIndexes()
    {
        lock (_indexes)
        {
            WriteField(XenStoreDomainInterface.ReqCons, 0);
            WriteField(XenStoreDomainInterface.ReqProd, 0);
            WriteField(XenStoreDomainInterface.RspCons, 0);
            WriteField(XenStoreDomainInterface.RspProd, 0);
            Interlocked.Increment(ref _resets);
        }
        Interlocked.MemoryBarrier();
        if (ReconnectRequested)
        {
            WriteField(XenStoreDomainInterface.Connection, XsConstants.Connected);
            _notifier.Notify();
        }
        // A writer waiting for space, or a reader, sees the reset.
        Signal();
    }

    private IOException Corrupt()
    {
        if (Role == XenStoreRingRole.Server)
            WriteField(XenStoreDomainInterface.Error, XsConstants.ErrorRingIdx);
        return new IOException("XenStore ring indexes are corrupt");
    }

    /// <summary>Copies out whatever the peer produced, without waiting; 0 when the ring is empty.</summary>
    public int TryRead(Span<byte> destination)
    {
        if (_disposed)
            throw new ObjectDisposedException(nameof(XenStoreRingStream));
        CheckReconnect();
        uint cons = ReadField(_inCons);
        uint prod = ReadField(_inProd);
        Interlocked.MemoryBarrier(); // read the data only after seeing the producer index
        uint avail = prod - cons;
        if (avail > XsConstants.RingSize)
            throw Corrupt();
        int n = (int)Math.Min(avail, (uint)destination.Length);
        if (n == 0)
            return 0;
        var ring = _page.Span.Slice(_inRing, XsConstants.RingSize);
        int start = (int)(cons & Mask);
        int first = Math.Min(n, XsConstants.RingSize - start);
        ring.Slice(start, first).CopyTo(destination);
        ring[..(n - first)].CopyTo(destination[first..]);
        Interlocked.MemoryBarrier(); // finish reading before releasing the space
        WriteField(_inCons, cons + (uint)n);
        _notifier.Notify();
        return n;
    }

    /// <summary>Copies as much as fits into the ring, without waiting; returns the bytes written.</summary>
    public int TryWrite(ReadOnlySpan<byte> source)
    {
        if (_disposed)
            throw new ObjectDisposedException(nameof(XenStoreRingStream));
        lock (_indexes)
            return ReconnectRequested ? 0 : WriteLocked(source);
    }

    private int WriteLocked(ReadOnlySpan<byte> source)
    {
        uint cons = ReadField(_outCons);
        uint prod = ReadField(_outProd);
        Interlocked.MemoryBarrier();
        uint used = prod - cons;
        if (used > XsConstants.RingSize)
            throw Corrupt();
        int n = (int)Math.Min(XsConstants.RingSize - used, (uint)source.Length);
        if (n == 0)
            return 0;
        var ring = _page.Span.Slice(_outRing, XsConstants.RingSize);
        int start = (int)(prod & Mask);
        int first = Math.Min(n, XsConstants.RingSize - start);
        source[..first].CopyTo(ring[start..]);
        source[first..n].CopyTo(ring);
        Interlocked.MemoryBarrier(); // data before the producer index
        WriteField(_outProd, prod + (uint)n);
        _notifier.Notify();
        return n;
    }

    /// <inheritdoc/>
    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        while (true)
        {
            if (_disposed)
                return 0;
            int n = TryRead(buffer.Span);
            if (n > 0 || buffer.Length == 0)
                return n;
            await _readable.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <inheritdoc/>
    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        int resets = Resets;
        while (!buffer.IsEmpty)
        {
            if (_disposed)
                throw new ObjectDisposedException(nameof(XenStoreRingStream));
            // xenstore-ring.txt, ring reconnection: a guest that asked for a fresh ring gets none of the old output
            // (the server empties both queues and drops packets partly written), even with the ring full.
            if (ReconnectRequested || Resets != resets)
                return;
            int n = TryWrite(buffer.Span);
            buffer = buffer[n..];
            if (n == 0)
                await _writable.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <inheritdoc/>
    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    /// <inheritdoc/>
    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    /// <inheritdoc/>
    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    /// <inheritdoc/>
    public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    /// <inheritdoc/>
    public override void Flush()
    {
    }

    /// <inheritdoc/>
    public override bool CanRead => true;

    /// <inheritdoc/>
    public override bool CanWrite => true;

    /// <inheritdoc/>
    public override bool CanSeek => false;

    /// <inheritdoc/>
    public override long Length => throw new NotSupportedException();

    /// <inheritdoc/>
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    /// <inheritdoc/>
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    /// <inheritdoc/>
    public override void SetLength(long value) => throw new NotSupportedException();

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        _disposed = true;
        Signal();
        base.Dispose(disposing);
    }

    internal static uint ReadIndex(ReadOnlySpan<byte> page, int offset) => BinaryPrimitives.ReadUInt32LittleEndian(page[offset..]);
}
