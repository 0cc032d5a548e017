using System.Text;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// A domain's console output: every byte the guest writes through console_io, port 0xE9 or the
/// COM1 transmitter. Keeps the whole transcript and forwards complete lines to a sink.
/// </summary>
internal sealed class DomainConsole
{
    /// <summary>The most bytes kept in <see cref="Transcript"/>; a guest cannot make the host grow without bound.</summary>
    public const int MaxTranscriptBytes = 1 << 20;

    private readonly StringBuilder _transcript = new();
    private readonly StringBuilder _line = new();
    private readonly Action<string>? _lineSink;
    private readonly Queue<byte> _input = new();

    /// <summary>Creates a console that forwards each completed line (with its '\n') to <paramref name="lineSink"/>.</summary>
    public DomainConsole(Action<string>? lineSink) => _lineSink = lineSink;

    /// <summary>Everything the guest printed so far (capped at <see cref="MaxTranscriptBytes"/>).</summary>
    public string Transcript => _transcript.ToString();

    /// <summary>Appends guest bytes (treated as Latin-1, as a serial terminal would).</summary>
    public void Write(ReadOnlySpan<byte> bytes)
    {
        foreach (byte b in bytes)
            Write(b);
    }

    /// <summary>Appends one guest byte.</summary>
    public void Write(byte b)
    {
        char c = (char)b;
        if (_transcript.Length < MaxTranscriptBytes)
            _transcript.Append(c);
        _line.Append(c);
        if (c == '\n' || _line.Length >= 4096)
            Flush();
    }

    /// <summary>Queues bytes for the guest to read with CONSOLEIO_read.</summary>
    public void EnqueueInput(ReadOnlySpan<byte> bytes)
    {
        foreach (byte b in bytes)
            _input.Enqueue(b);
    }

    /// <summary>Copies up to <c>destination.Length</c> queued input bytes without consuming them.</summary>
    public int PeekInput(Span<byte> destination)
    {
        int n = 0;
        foreach (byte b in _input)
        {
            if (n == destination.Length)
                break;
            destination[n++] = b;
        }

        return n;
    }

    /// <summary>Drops <paramref name="count"/> input bytes the guest has received.</summary>
    public void ConsumeInput(int count)
    {
        for (int i = 0; i < count && _input.Count > 0; i++)
            _input.Dequeue();
    }

    /// <summary>Forwards a partial last line (at domain teardown).</summary>
    public void Flush()
    {
        if (_line.Length == 0)
            return;
        string line = _line.ToString();
        _line.Clear();
        _lineSink?.Invoke(line);
    }
}
