using VmmKit.Boot;
using VmmKit.Dom0.Xen;

namespace VmmKit.Dom0.Daemon;

/// <summary>
/// The domain builder's view of a new domain's RAM: guest-physical page N is foreign frame <c>frames[N]</c>
/// (from MMAPBATCH), written in place through the machine-memory file. Writes outside the mapped pages fail.
/// </summary>
internal sealed class ForeignMemoryWriter(HypervisorChannel channel, long[] frames) : IGuestPhysicalWriter
{
    /// <inheritdoc/>
    public bool TryWrite(ulong address, ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
        {
            ulong page = address >> 12;
            if (page >= (ulong)frames.Length || frames[page] < 0)
                return false;
            int offset = (int)(address & 4095);
            int n = Math.Min(4096 - offset, data.Length);
            data[..n].CopyTo(channel.Frame((ulong)frames[page])[offset..]);
            data = data[n..];
            address += (ulong)n;
        }

        return true;
    }
}
