namespace VmmKit.Devices.Tests;

internal sealed class RecordingSink : ISerialSink
{
    public List<byte> Bytes { get; } = [];

    public string Text => string.Concat(Bytes.Select(b => (char)b));

    public void Write(byte value) => Bytes.Add(value);
}

internal sealed class RecordingLine : IInterruptLine
{
    public List<bool> Changes { get; } = [];

    public bool Level => Changes.Count > 0 && Changes[^1];

    public void SetLevel(bool asserted) => Changes.Add(asserted);
}

/// <summary>A device that records accesses and reads back offset-derived bytes.</summary>
internal sealed class ProbeDevice : IBusDevice
{
    public List<(ulong Base, ulong Offset, int Length, bool IsWrite)> Accesses { get; } = [];

    public void Read(ulong baseAddress, ulong offset, Span<byte> data)
    {
        Accesses.Add((baseAddress, offset, data.Length, false));
        for (int i = 0; i < data.Length; i++)
            data[i] = (byte)(offset + (ulong)i + 0x10);
    }

    public void Write(ulong baseAddress, ulong offset, ReadOnlySpan<byte> data) =>
        Accesses.Add((baseAddress, offset, data.Length, true));
}
