namespace VmmKit.Backends.Block;

/// <summary>
/// What a block backend reads and writes: a disk of 512-byte sectors. Failures throw <see cref="IOException"/>; the
/// backend turns them into <see cref="BlkifStatus.Error"/> responses. Implementations are called from one thread at a
/// time per ring.
/// </summary>
public interface IBlockStorage
{
    /// <summary>Size in 512-byte sectors (the backend's <c>sectors</c> node).</summary>
    ulong Sectors { get; }

    /// <summary>True when writes are refused (the backend advertises <see cref="VdiskInfo.ReadOnly"/>).</summary>
    bool IsReadOnly { get; }

    /// <summary>Reads <paramref name="destination"/>.Length bytes at byte <paramref name="offset"/>.</summary>
    /// <param name="offset">Byte offset, a multiple of 512.</param>
    /// <param name="destination">Where the bytes go.</param>
    void Read(long offset, Span<byte> destination);

    /// <summary>Writes <paramref name="source"/> at byte <paramref name="offset"/>.</summary>
    /// <param name="offset">Byte offset, a multiple of 512.</param>
    /// <param name="source">The bytes.</param>
    void Write(long offset, ReadOnlySpan<byte> source);

    /// <summary>Makes completed writes durable (<c>BLKIF_OP_FLUSH_DISKCACHE</c>: fsync for a file).</summary>
    void Flush();
}
