using System.Text;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// A domain's console output: every byte the guest writes through console_io, port 0xE9 or the
/// COM1 transmitter, and what the PV console backend takes off the console ring. Keeps the whole transcript and forwards
/// complete lines to a sink. The two are separate streams (under Xen, Xen's own console and xenconsoled's), so each
/// gathers its own line and the transcript takes whole lines: a line half-written on one never has the other's cut into it.
/// </summary>
internal sealed class DomainConsole
{
    /// <summary>The most bytes kept in <see cref="Transcript"/>; a guest cannot make the host grow without bound.</summary>
    public const int MaxTranscriptBytes = 1 << 20;

    private readonly StringBuilder _transcript = new();
    private readonly StringBuilder _line = new();
    private readonly StringBuilder _ringLine = new();
    private readonly Action<string>? _lineSink;
    private readonly Queue<byte> _input = new();

    // The vCPUs of the threaded scheduler and the console backend write from their own threads.
    private readonly Lock _lock = new();

    /// <summary>Creates a console that forwards each completed line (with its '\n') to <paramref name="lineSink"/>.</summary>
    public DomainConsole(Action<string>? lineSink) => _lineSink = lineSink;

    /// <summary>Everything the guest printed so far, unfinished lines last (capped at <see cref="MaxTranscriptBytes"/>).</summary>
    public string Transcript
    {
        get
        {
            lock (_lock)
                return string.Concat(_transcript.ToString(), _line.ToString(), _ringLine.ToString());
        }
    }

    /// <summary>Appends guest bytes written by the vCPU (treated as Latin-1, as a serial terminal would).</summary>
    public void Write(ReadOnlySpan<byte> bytes)
    {
        lock (_lock)
        {
            foreach (byte b in bytes)
                Append(_line, b);
        }
    }

    /// <summary>Appends one guest byte written by the vCPU.</summary>
    public void Write(byte b)
    {
        lock (_lock)
            Append(_line, b);
    }

    /// <summary>Appends bytes the PV console backend read from the guest's console ring.</summary>
    public void WriteRing(ReadOnlySpan<byte> bytes)
    {
        lock (_lock)
        {
            foreach (byte b in bytes)
                Append(_ringLine, b);
        }
    }

    private void Append(StringBuilder line, byte b)
    {
        char c = (char)b;
        line.Append(c);
        if (c == '\n' || line.Length >= 4096)
            Complete(line);
    }

    /// <summary>Queues bytes for the guest to read with CONSOLEIO_read.</summary>
    public void EnqueueInput(ReadOnlySpan<byte> bytes)
    {
        lock (_lock)
        {
            foreach (byte b in bytes)
                _input.Enqueue(b);
        }
    }

    /// <summary>Copies up to <c>destination.Length</c> queued input bytes without consuming them.</summary>
    public int PeekInput(Span<byte> destination)
    {
        int n = 0;
        lock (_lock)
        {
            foreach (byte b in _input)
            {
                if (n == destination.Length)
                    break;
                destination[n++] = b;
            }
        }

        return n;
    }

    /// <summary>Drops <paramref name="count"/> input bytes the guest has received.</summary>
    public void ConsumeInput(int count)
    {
        lock (_lock)
        {
            for (int i = 0; i < count && _input.Count > 0; i++)
                _input.Dequeue();
        }
    }

    /// <summary>Forwards the partial last lines (at domain teardown).</summary>
    public void Flush()
    {
        lock (_lock)
        {
            Complete(_line);
            Complete(_ringLine);
        }
    }

    private void Complete(StringBuilder line)
    {
        if (line.Length == 0)
            return;
        string text = line.ToString();
        line.Clear();
        if (_transcript.Length < MaxTranscriptBytes)
            _transcript.Append(text.AsSpan(0, Math.Min(text.Length, MaxTranscriptBytes - _transcript.Length)));
        _lineSink?.Invoke(text);
    }
}
