using Microsoft.Win32.SafeHandles;

namespace VmmKit.Backends.Block;

/// <summary>
/// A raw disk image file (xl's <c>format=raw</c>): sector n is bytes [512n, 512n+512) of the file. Reads and writes go
/// through <see cref="RandomAccess"/> at explicit offsets (no shared file position, no allocation); a flush is
/// <see cref="RandomAccess.FlushToDisk"/> (fsync). A trailing partial sector is not part of the disk.
/// </summary>
public sealed class RawImageStorage : IBlockStorage, IDisposable
{
    private readonly SafeFileHandle _file;

    /// <summary>Opens <paramref name="path"/>.</summary>
    /// <param name="path">The image file.</param>
    /// <param name="readOnly">Open read-only (xl's <c>access=ro</c>).</param>
    public RawImageStorage(string path, bool readOnly = false)
    {
        _file = File.OpenHandle(path, FileMode.Open, readOnly ? FileAccess.Read : FileAccess.ReadWrite, FileShare.ReadWrite);
        IsReadOnly = readOnly;
        Sectors = (ulong)RandomAccess.GetLength(_file) / BlkifLimits.SectorSize;
    }

    /// <inheritdoc/>
    public ulong Sectors { get; }

    /// <inheritdoc/>
    public bool IsReadOnly { get; }

    /// <inheritdoc/>
    public void Read(long offset, Span<byte> destination)
    {
        while (!destination.IsEmpty)
        {
            int n = RandomAccess.Read(_file, destination, offset);
            if (n <= 0)
                throw new IOException($"short read at byte {offset} of the image");
            destination = destination[n..];
            offset += n;
        }
    }

    /// <inheritdoc/>
    public void Write(long offset, ReadOnlySpan<byte> source) => RandomAccess.Write(_file, source, offset);

    /// <inheritdoc/>
    public void Flush() => RandomAccess.FlushToDisk(_file);

    /// <summary>Closes the file.</summary>
    public void Dispose() => _file.Dispose();
}
