namespace VmmKit.ReferenceHypervisor.Pv;

/// <summary>
/// The console backend's sink for one domain: the backend writes on its own thread, and the scheduler thread moves the
/// bytes into the domain's <see cref="DomainConsole"/> (which the vCPU also writes through console_io and port 0xE9),
/// so the console is only ever touched by one thread.
/// </summary>
internal sealed class ConsoleOutputQueue(DomainConsole console) : Stream
{
    private readonly Lock _lock = new();
    private byte[] _bytes = new byte[4096];
    private int _count;
    private volatile bool _pending;

    /// <summary>Moves queued bytes to the domain's console (scheduler thread).</summary>
    public void Drain()
    {
        if (!_pending)
            return;
        lock (_lock)
        {
            console.WriteRing(_bytes.AsSpan(0, _count));
            _count = 0;
            _pending = false;
        }
    }

    /// <inheritdoc/>
    public override void Write(ReadOnlySpan<byte> buffer)
    {
        lock (_lock)
        {
            // The console keeps at most DomainConsole.MaxTranscriptBytes; a guest flooding faster than the scheduler drains
            // loses the excess instead of growing the host without bound.
            if (_count + buffer.Length > _bytes.Length)
            {
                if (_bytes.Length >= DomainConsole.MaxTranscriptBytes)
                    buffer = buffer[..Math.Max(0, _bytes.Length - _count)];
                else
                    Array.Resize(ref _bytes, Math.Min(DomainConsole.MaxTranscriptBytes, Math.Max(_bytes.Length * 2, _count + buffer.Length)));
                buffer = buffer[..Math.Min(buffer.Length, _bytes.Length - _count)];
            }

            buffer.CopyTo(_bytes.AsSpan(_count));
            _count += buffer.Length;
            _pending = true;
        }
    }

    /// <inheritdoc/>
    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    /// <inheritdoc/>
    public override void Flush()
    {
    }

    /// <inheritdoc/>
    public override bool CanRead => false;
    /// <inheritdoc/>
    public override bool CanSeek => false;
    /// <inheritdoc/>
    public override bool CanWrite => true;
    /// <inheritdoc/>
    public override long Length => throw new NotSupportedException();
    /// <inheritdoc/>
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    /// <inheritdoc/>
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    /// <inheritdoc/>
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    /// <inheritdoc/>
    public override void SetLength(long value) => throw new NotSupportedException();
}
