using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Daemon;

/// <summary>
/// Bytes waiting to go to one client: replies and watch events, already framed. Two buffers swap between
/// the producer (the store, under its lock) and the single writer, so steady-state traffic allocates
/// nothing. Watch events beyond a byte budget are dropped, so a client that never reads cannot make the
/// daemon grow without bound.
/// </summary>
internal sealed class XsOutputQueue
{
    private readonly Lock _lock = new();
    private byte[] _pending = new byte[8192];
    private byte[]? _spare = new byte[8192];
    private int _length;
    private int _eventBytes;

    public int DroppedEvents { get; private set; }

    public bool HasPending
    {
        get { lock (_lock) return _length > 0; }
    }

    public int PendingBytes
    {
        get { lock (_lock) return _length; }
    }

    public void Append(in XsHeader header, ReadOnlySpan<byte> payload)
    {
        lock (_lock)
        {
            var dest = Reserve(XsConstants.HeaderSize + payload.Length);
            header.Write(dest);
            payload.CopyTo(dest[XsConstants.HeaderSize..]);
        }
    }

    /// <summary>Queues bytes that are already framed (output carried over by a restart).</summary>
    public void AppendRaw(ReadOnlySpan<byte> frames)
    {
        lock (_lock)
            frames.CopyTo(Reserve(frames.Length));
    }

    /// <summary>A copy of what is queued and not yet taken by the writer (for a state dump).</summary>
    public byte[] Snapshot()
    {
        lock (_lock)
            return _pending.AsSpan(0, _length).ToArray();
    }

    /// <summary>Queues a WATCH_EVENT (<c>path|token|</c>); false when it was dropped for size or backlog.</summary>
    public bool AppendEvent(string path, string token, int backlogLimit)
    {
        int len = path.Length + 1 + token.Length + 1;
        if (len > XsConstants.PayloadMax)
            return false;
        lock (_lock)
        {
            if (path.Length > 0 && path[0] != '@' && IsPending(path, token, len))
                return false;
            if (_eventBytes + len > backlogLimit)
            {
                DroppedEvents++;
                return false;
            }
            _eventBytes += len + XsConstants.HeaderSize;
            var dest = Reserve(XsConstants.HeaderSize + len);
            new XsHeader(XsMessageType.WatchEvent, 0, 0, (uint)len).Write(dest);
            int at = XsConstants.HeaderSize;
            foreach (char c in path) dest[at++] = (byte)c;
            dest[at++] = 0;
            foreach (char c in token) dest[at++] = (byte)c;
            dest[at] = 0;
            return true;
        }
    }

    /// <summary>
    /// core.c send_event: an event identical to one still waiting to be written (same path and token) is
    /// dropped; special events are exempt. Walks the queued frames by their headers.
    /// </summary>
    private bool IsPending(string path, string token, int len)
    {
        for (int at = 0; at + XsConstants.HeaderSize <= _length;)
        {
            var h = XsHeader.Read(_pending.AsSpan(at, XsConstants.HeaderSize));
            int payload = at + XsConstants.HeaderSize;
            if (h.Type == XsMessageType.WatchEvent && h.Length == len && Matches(_pending.AsSpan(payload, len), path, token))
                return true;
            at = payload + (int)h.Length;
        }
        return false;
    }

    private static bool Matches(ReadOnlySpan<byte> payload, string path, string token)
    {
        int at = 0;
        foreach (char c in path)
        {
            if (payload[at++] != (byte)c)
                return false;
        }
        if (payload[at++] != 0)
            return false;
        foreach (char c in token)
        {
            if (payload[at++] != (byte)c)
                return false;
        }
        return true;
    }

    private Span<byte> Reserve(int size)
    {
        if (_length + size > _pending.Length)
        {
            var bigger = new byte[Math.Max(_pending.Length * 2, _length + size)];
            _pending.AsSpan(0, _length).CopyTo(bigger);
            _pending = bigger;
        }
        var span = _pending.AsSpan(_length, size);
        _length += size;
        return span;
    }

    /// <summary>Takes everything queued; give the buffer back with <see cref="Return"/> once written.</summary>
    public bool TryTake(out byte[] buffer, out int length)
    {
        lock (_lock)
        {
            buffer = _pending;
            length = _length;
            if (_length == 0)
                return false;
            _pending = _spare ?? new byte[8192];
            _spare = null;
            _length = 0;
            _eventBytes = 0;
            return true;
        }
    }

    public void Return(byte[] buffer)
    {
        lock (_lock)
        {
            if (_spare is null && buffer.Length <= 1 << 20)
                _spare = buffer;
        }
    }
}
