namespace VmmKit.Dom0.Daemon;

/// <summary>
/// The sink of one domain's console backend: everything the guest printed (kept for <c>xl console</c>'s replay, and
/// appended to a log file) and the followers attached now. Write-only.
/// </summary>
internal sealed class ConsoleLog(string path) : Stream
{
    /// <summary>
    /// The replay kept, the newest output: the <c>console/limit</c> the toolstack writes (1 MiB). xenconsoled keeps no more
    /// of a domain's output than that (buffer_append), so a guest printing without end cannot exhaust Dom0's memory.
    /// </summary>
    internal const int MaxHistory = 1 << 20;

    private readonly MemoryStream _history = new();
    private readonly FileStream _file = new(path, FileMode.Append, FileAccess.Write, FileShare.Read);
    private readonly List<Action<ReadOnlyMemory<byte>>> _followers = [];
    private readonly Lock _lock = new();

    /// <summary>
    /// The output so far, and <paramref name="output"/> subscribed to what follows (dispose to leave). An empty chunk is
    /// the last: the console was disconnected (the domain is gone).
    /// </summary>
    public IDisposable Follow(Action<ReadOnlyMemory<byte>> output, out byte[] history)
    {
        lock (_lock)
        {
            int kept = (int)Math.Min(_history.Length, MaxHistory);
            history = _history.GetBuffer().AsSpan((int)_history.Length - kept, kept).ToArray();
            _followers.Add(output);
        }

        return new Unfollow(this, output);
    }

    private sealed class Unfollow(ConsoleLog log, Action<ReadOnlyMemory<byte>> output) : IDisposable
    {
        public void Dispose()
        {
            lock (log._lock)
                log._followers.Remove(output);
        }
    }

    /// <inheritdoc/>
    public override void Write(byte[] buffer, int offset, int count)
    {
        byte[] chunk = buffer.AsSpan(offset, count).ToArray();
        lock (_lock)
        {
            _history.Write(chunk);
            if (_history.Length > 2 * MaxHistory)
            {
                // Only the newest MaxHistory bytes are replayed; trimming at twice that keeps each write O(1) amortised.
                byte[] all = _history.GetBuffer();
                Buffer.BlockCopy(all, (int)_history.Length - MaxHistory, all, 0, MaxHistory);
                _history.SetLength(MaxHistory);
            }

            _file.Write(chunk);
            foreach (var f in _followers)
                f(chunk);
        }
    }

    /// <inheritdoc/>
    public override void Flush()
    {
        lock (_lock)
            _file.Flush();
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

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            lock (_lock)
            {
                foreach (var f in _followers)
                    f(ReadOnlyMemory<byte>.Empty);
                _followers.Clear();
                _file.Dispose();
            }
        }

        base.Dispose(disposing);
    }
}
