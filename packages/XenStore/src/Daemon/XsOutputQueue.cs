using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Daemon;

/// <summary>
/// Bytes waiting to go to one client: replies and watch events, already framed. Two buffers swap between
/// the producer (the store, under its lock) and the single writer, so steady-state traffic allocates
/// nothing. Events are dropped only by the rules of <see cref="AppendEvent(string, string, long, int, long)"/>:
/// a client that reads gets every event, one that stopped reading cannot make the daemon grow without bound.
/// </summary>
internal sealed class XsOutputQueue
{
    private readonly Lock _lock = new();
    // core.c send_event's duplicate check, as a set instead of a walk of the queue: the (path, token) of every
    // non-special event in _pending, so the check costs the same however long the queue of a stuck client is.
    private readonly HashSet<(string Path, string Token)> _queuedEvents = [];
    private byte[] _pending = new byte[8192];
    private byte[]? _spare = new byte[8192];
    private int _length;
    private int _eventBytes;
    private int _writingLength;
    private long _writingSince;

    public int DroppedEvents { get; private set; }

    /// <summary>Queued events a new event was compared with by the duplicate check (the work it costs).</summary>
    internal long EventComparisons { get; private set; }

    public bool HasPending
    {
        get { lock (_lock) return _length > 0; }
    }

    public int PendingBytes
    {
        get { lock (_lock) return _length; }
    }

    /// <summary>Bytes queued or being written (what xenstored charges to the receiving domain's memory).</summary>
    public long OutstandingBytes
    {
        get { lock (_lock) return (long)_length + _writingLength; }
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
        {
            int first = _length;
            frames.CopyTo(Reserve(frames.Length));
            // Carried-over events take part in the duplicate check like any other.
            for (int at = first; at + XsConstants.HeaderSize <= _length;)
            {
                var h = XsHeader.Read(_pending.AsSpan(at, XsConstants.HeaderSize));
                int payload = at + XsConstants.HeaderSize;
                if (payload + (long)h.Length > _length)
                    break;
                if (h.Type == XsMessageType.WatchEvent && SplitEvent(_pending.AsSpan(payload, (int)h.Length), out var path, out var token) && path.Length > 0 && path[0] != '@')
                    _queuedEvents.Add((path, token));
                at = payload + (int)h.Length;
            }
        }
    }

    private static bool SplitEvent(ReadOnlySpan<byte> payload, out string path, out string token)
    {
        path = token = "";
        int nul = payload.IndexOf((byte)0);
        if (nul < 0)
            return false;
        var rest = payload[(nul + 1)..];
        int end = rest.IndexOf((byte)0);
        path = System.Text.Encoding.Latin1.GetString(payload[..nul]);
        token = System.Text.Encoding.Latin1.GetString(end < 0 ? rest : rest[..end]);
        return true;
    }

    /// <summary>A copy of what is queued and not yet taken by the writer (for a state dump).</summary>
    public byte[] Snapshot()
    {
        lock (_lock)
            return _pending.AsSpan(0, _length).ToArray();
    }

    /// <summary>Queues a WATCH_EVENT that no quota limits (the event a new watch fires at once).</summary>
    public bool AppendEvent(string path, string token) => AppendEvent(path, token, long.MaxValue, int.MaxValue, 0);

    /// <summary>
    /// Queues a WATCH_EVENT (<c>path|token|</c>); false when it was not queued:
    /// <list type="bullet">
    /// <item>over <c>XENSTORE_PAYLOAD_MAX</c>, or identical to an event still queued (core.c send_event; <c>@</c> events exempt);</item>
    /// <item>when this connection's output (queued or being written) plus the event would exceed
    /// <paramref name="memoryLeft"/> (send_event's domain_memory_add_chk: the receiving domain's memory quota
    /// minus its nodes and watches; unlimited for privileged connections);</item>
    /// <item>when the client stopped reading: a write to it has not completed for <paramref name="stalledAfterMs"/>
    /// and the events queued behind it already fill <paramref name="stalledBacklog"/> bytes.</item>
    /// </list>
    /// A client whose writes complete never hits the last rule, however many events one message fires.
    /// </summary>
    public bool AppendEvent(string path, string token, long memoryLeft, int stalledBacklog, long stalledAfterMs)
    {
        int len = path.Length + 1 + token.Length + 1;
        if (len > XsConstants.PayloadMax)
            return false;
        lock (_lock)
        {
            bool special = path.Length > 0 && path[0] == '@';
            if (!special)
            {
                EventComparisons++;
                if (_queuedEvents.Contains((path, token)))
                    return false;
            }
            int frame = len + XsConstants.HeaderSize;
            if ((long)_length + _writingLength + frame > memoryLeft
                || (_writingSince != 0 && Environment.TickCount64 - _writingSince >= stalledAfterMs && _eventBytes + frame > stalledBacklog))
            {
                DroppedEvents++;
                return false;
            }
            if (!special)
                _queuedEvents.Add((path, token));
            _eventBytes += frame;
            var dest = Reserve(frame);
            new XsHeader(XsMessageType.WatchEvent, 0, 0, (uint)len).Write(dest);
            int at = XsConstants.HeaderSize;
            foreach (char c in path) dest[at++] = (byte)c;
            dest[at++] = 0;
            foreach (char c in token) dest[at++] = (byte)c;
            dest[at] = 0;
            return true;
        }
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

    /// <summary>Drops what is queued and not yet taken by the writer (a guest that reconnected gets none of it).</summary>
    public void Clear()
    {
        lock (_lock)
        {
            _length = 0;
            _eventBytes = 0;
            _queuedEvents.Clear();
        }
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
            _writingLength = _length;
            _writingSince = Math.Max(1, Environment.TickCount64);
            _length = 0;
            _eventBytes = 0;
            bool large = _queuedEvents.Count > 4096;
            _queuedEvents.Clear();
            if (large)
                _queuedEvents.TrimExcess();
            return true;
        }
    }

    public void Return(byte[] buffer)
    {
        lock (_lock)
        {
            _writingLength = 0;
            _writingSince = 0;
            if (_spare is null && buffer.Length <= 1 << 20)
                _spare = buffer;
        }
    }
}
