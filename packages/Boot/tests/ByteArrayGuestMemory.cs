namespace VmmKit.Boot.Tests;

/// <summary>A flat guest-physical space in a byte array, for loader tests without a processor.</summary>
internal sealed class ByteArrayGuestMemory(int size) : IGuestPhysicalWriter
{
    public byte[] Bytes { get; } = new byte[size];

    public bool TryWrite(ulong address, ReadOnlySpan<byte> data)
    {
        if (address > (ulong)Bytes.Length || (ulong)data.Length > (ulong)Bytes.Length - address)
            return false;
        data.CopyTo(Bytes.AsSpan((int)address));
        return true;
    }
}
