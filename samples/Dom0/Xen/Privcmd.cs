using System.Buffers.Binary;
using VmmKit.Hypercall;

namespace VmmKit.Dom0.Xen;

/// <summary>
/// What Linux's /dev/xen/privcmd gives a Dom0 process (xen/privcmd.h): a hypercall as domain 0
/// (IOCTL_PRIVCMD_HYPERCALL) and foreign frames of another domain (IOCTL_PRIVCMD_MMAPBATCH_V2), over the channel.
/// </summary>
public sealed class Privcmd
{
    private readonly HypervisorChannel _channel;

    /// <summary>A privcmd handle on <paramref name="channel"/>, with hypercall buffers in Dom0's first <paramref name="bufferPages"/> pages.</summary>
    public Privcmd(HypervisorChannel channel, int bufferPages = 256)
    {
        _channel = channel;
        Buffers = new HypercallBuffers(channel, bufferPages);
    }

    /// <summary>The channel.</summary>
    public HypervisorChannel Channel => _channel;

    /// <summary>Buffers for pointer arguments.</summary>
    public HypercallBuffers Buffers { get; }

    /// <summary>Makes hypercall <paramref name="op"/>; returns RAX (a negated Xen errno on failure).</summary>
    public long Hypercall(HypercallNumber op, ulong a0 = 0, ulong a1 = 0, ulong a2 = 0, ulong a3 = 0, ulong a4 = 0)
    {
        Span<byte> p = stackalloc byte[48];
        BinaryPrimitives.WriteUInt64LittleEndian(p, (ulong)op);
        BinaryPrimitives.WriteUInt64LittleEndian(p[8..], a0);
        BinaryPrimitives.WriteUInt64LittleEndian(p[16..], a1);
        BinaryPrimitives.WriteUInt64LittleEndian(p[24..], a2);
        BinaryPrimitives.WriteUInt64LittleEndian(p[32..], a3);
        BinaryPrimitives.WriteUInt64LittleEndian(p[40..], a4);
        return BinaryPrimitives.ReadInt64LittleEndian(_channel.Request(Dom0MessageType.Hypercall, p));
    }

    /// <summary>
    /// Takes references on <paramref name="gfns"/> of <paramref name="domid"/>; <paramref name="results"/> receives each
    /// frame's machine frame number, or a negated errno (-ESRCH: no such domain, -EINVAL: nothing at that gfn).
    /// </summary>
    public void MmapBatch(ushort domid, ReadOnlySpan<ulong> gfns, Span<long> results)
    {
        if (gfns.Length > HypervisorChannel.MaxBatch || results.Length < gfns.Length)
            throw new ArgumentOutOfRangeException(nameof(gfns), gfns.Length, $"at most {HypervisorChannel.MaxBatch} frames, with as many results");
        var p = new byte[8 + (gfns.Length * 8)];
        BinaryPrimitives.WriteUInt16LittleEndian(p, domid);
        BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(4), (uint)gfns.Length);
        for (int i = 0; i < gfns.Length; i++)
            BinaryPrimitives.WriteUInt64LittleEndian(p.AsSpan(8 + (i * 8)), gfns[i]);
        var reply = _channel.Request(Dom0MessageType.MmapBatch, p);
        for (int i = 0; i < gfns.Length; i++)
            results[i] = BinaryPrimitives.ReadInt64LittleEndian(reply.AsSpan(i * 8));
    }

    /// <summary>Drops the references of an <see cref="MmapBatch"/> on <paramref name="mfns"/> (in batches); 0 or -EINVAL.</summary>
    public long Unmap(ReadOnlySpan<ulong> mfns)
    {
        for (int start = 0; start < mfns.Length; start += HypervisorChannel.MaxBatch)
        {
            long rc = UnmapBatch(mfns.Slice(start, Math.Min(HypervisorChannel.MaxBatch, mfns.Length - start)));
            if (rc != 0)
                return rc;
        }

        return 0;
    }

    private long UnmapBatch(ReadOnlySpan<ulong> mfns)
    {
        var p = new byte[8 + (mfns.Length * 8)];
        BinaryPrimitives.WriteUInt32LittleEndian(p, (uint)mfns.Length);
        for (int i = 0; i < mfns.Length; i++)
            BinaryPrimitives.WriteUInt64LittleEndian(p.AsSpan(8 + (i * 8)), mfns[i]);
        return BinaryPrimitives.ReadInt64LittleEndian(_channel.Request(Dom0MessageType.Unmap, p));
    }
}
