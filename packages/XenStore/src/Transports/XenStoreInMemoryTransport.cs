namespace VmmKit.XenStore.Transports;

/// <summary>An in-process, bidirectional byte pipe for tests and embedding: two connected streams.</summary>
public static class XenStoreInMemoryTransport
{
    /// <summary>Creates two streams; bytes written to one are read from the other.</summary>
    public static (Stream A, Stream B) CreatePair()
    {
        var ab = new ByteChannel();
        var ba = new ByteChannel();
        return (new DuplexStream(ba, ab), new DuplexStream(ab, ba));
    }

    private sealed class ByteChannel
    {
        private readonly Lock _lock = new();
        private readonly SemaphoreSlim _available = new(0, 1);
        private byte[] _buffer = new byte[4096];
        private int _start, _count;
        private bool _closed;

        public void Write(ReadOnlySpan<byte> data)
        {
            lock (_lock)
            {
                if (_closed)
                    throw new IOException("the in-memory pipe is closed");
                if (_start + _count + data.Length > _buffer.Length)
                {
                    var next = _count + data.Length > _buffer.Length ? new byte[Math.Max(_buffer.Length * 2, _count + data.Length)] : _buffer;
                    _buffer.AsSpan(_start, _count).CopyTo(next);
                    _buffer = next;
                    _start = 0;
                }
                data.CopyTo(_buffer.AsSpan(_start + _count));
                _count += data.Length;
            }
            Wake();
        }

        public void Close()
        {
            lock (_lock)
                _closed = true;
            Wake();
        }

        private void Wake()
        {
            try
            {
                if (_available.CurrentCount == 0)
                    _available.Release();
            }
            catch (SemaphoreFullException)
            {
            }
        }

        public async ValueTask<int> ReadAsync(Memory<byte> destination, CancellationToken ct)
        {
            while (true)
            {
                lock (_lock)
                {
                    if (_count > 0)
                    {
                        int n = Math.Min(_count, destination.Length);
                        _buffer.AsSpan(_start, n).CopyTo(destination.Span);
                        _start += n;
                        _count -= n;
                        if (_count == 0)
                            _start = 0;
                        return n;
                    }
                    if (_closed)
                        return 0;
                }
                await _available.WaitAsync(ct).ConfigureAwait(false);
            }
        }
    }

    private sealed class DuplexStream(ByteChannel input, ByteChannel output) : Stream
    {
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => input.ReadAsync(buffer, cancellationToken);

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            output.Write(buffer.Span);
            return ValueTask.CompletedTask;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        {
            output.Write(buffer.AsSpan(offset, count));
            return Task.CompletedTask;
        }

        public override int Read(byte[] buffer, int offset, int count) => input.ReadAsync(buffer.AsMemory(offset, count), default).AsTask().GetAwaiter().GetResult();

        public override void Write(byte[] buffer, int offset, int count) => output.Write(buffer.AsSpan(offset, count));

        public override void Flush()
        {
        }

        public override bool CanRead => true;
        public override bool CanWrite => true;
        public override bool CanSeek => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            output.Close();
            input.Close();
            base.Dispose(disposing);
        }
    }
}
