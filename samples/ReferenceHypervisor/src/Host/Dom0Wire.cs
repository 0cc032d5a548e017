using System.Buffers.Binary;

namespace VmmKit.ReferenceHypervisor.Host;

/// <summary>
/// The Dom0 channel's wire format, version 2 (docs/articles/dom0-abi.md): every message is a 24-byte little-endian header
/// (magic, version, type, request id, payload length, reserved) followed by its payload. A reply carries the request's
/// type with <see cref="ReplyBit"/> set and the request's id.
/// </summary>
internal static class Dom0Wire
{
    /// <summary>"VKD0" in memory order.</summary>
    public const uint Magic = 0x30444B56;

    /// <summary>The protocol version this hypervisor speaks.</summary>
    public const ushort Version = 2;

    /// <summary>Header size in bytes.</summary>
    public const int HeaderSize = 24;

    /// <summary>Set in a reply's type.</summary>
    public const ushort ReplyBit = 0x8000;

    /// <summary>The largest payload either side sends (an MMAPBATCH of <see cref="MaxBatch"/> frames).</summary>
    public const int MaxPayload = 8 + (MaxBatch * 8);

    /// <summary>Frames in one MMAPBATCH or UNMAP.</summary>
    public const int MaxBatch = 1024;

    /// <summary>Writes a header into <paramref name="buffer"/>.</summary>
    public static void WriteHeader(Span<byte> buffer, Dom0MessageType type, ulong id, int length)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(buffer, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(buffer[4..], Version);
        BinaryPrimitives.WriteUInt16LittleEndian(buffer[6..], (ushort)type);
        BinaryPrimitives.WriteUInt64LittleEndian(buffer[8..], id);
        BinaryPrimitives.WriteUInt32LittleEndian(buffer[16..], (uint)length);
        BinaryPrimitives.WriteUInt32LittleEndian(buffer[20..], 0);
    }

    /// <summary>Parses and checks a request header; false for anything a version-2 Dom0 may not send.</summary>
    public static bool TryReadRequestHeader(ReadOnlySpan<byte> header, out Dom0MessageType type, out ulong id, out int length)
    {
        type = (Dom0MessageType)BinaryPrimitives.ReadUInt16LittleEndian(header[6..]);
        id = BinaryPrimitives.ReadUInt64LittleEndian(header[8..]);
        uint len = BinaryPrimitives.ReadUInt32LittleEndian(header[16..]);
        length = (int)Math.Min(len, int.MaxValue);
        return BinaryPrimitives.ReadUInt32LittleEndian(header) == Magic
            && BinaryPrimitives.ReadUInt16LittleEndian(header[4..]) == Version
            && BinaryPrimitives.ReadUInt32LittleEndian(header[20..]) == 0
            && type is Dom0MessageType.Hypercall or Dom0MessageType.MmapBatch or Dom0MessageType.Unmap
            && len <= MaxPayload;
    }
}

/// <summary>Message types of the Dom0 channel (docs/dom0-abi.md).</summary>
internal enum Dom0MessageType : ushort
{
    /// <summary>Hypervisor to Dom0, once at connect, with the machine-memory file descriptor attached (SCM_RIGHTS).</summary>
    Welcome = 1,

    /// <summary>A hypercall as domain 0 (privcmd's IOCTL_PRIVCMD_HYPERCALL).</summary>
    Hypercall = 2,

    /// <summary>Foreign frames of another domain (privcmd's IOCTL_PRIVCMD_MMAPBATCH_V2).</summary>
    MmapBatch = 3,

    /// <summary>Drops foreign-frame references taken by <see cref="MmapBatch"/> (munmap of a privcmd mapping).</summary>
    Unmap = 4,

    /// <summary>Hypervisor to Dom0: a port of domain 0 fired (a read of /dev/xen/evtchn).</summary>
    Event = 5,
}
