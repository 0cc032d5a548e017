using VmmKit.Backends.Block;

namespace VmmKit.Backends.Tests;

/// <summary>A disk of zeros that counts its reads and can act on each (a frontend that keeps queueing requests).</summary>
internal sealed class EndlessStorage : IBlockStorage
{
    private int _reads;

    public Action<int>? OnRead { get; set; }

    public int Reads => Volatile.Read(ref _reads);

    public ulong Sectors => 64;

    public bool IsReadOnly => false;

    public void Read(long offset, Span<byte> destination)
    {
        destination.Clear();
        OnRead?.Invoke(Interlocked.Increment(ref _reads));
    }

    public void Write(long offset, ReadOnlySpan<byte> source)
    {
    }

    public void Flush()
    {
    }
}
