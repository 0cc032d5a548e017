using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace VmmKit.XenStore.Wire;

/// <summary>
/// <c>struct xsd_sockmsg</c> (xen/io/xs_wire.h): the 16-byte header in front of every message,
/// four little-endian 32-bit fields.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public readonly struct XsHeader
{
    /// <summary>The message type (<c>type</c>).</summary>
    public readonly XsMessageType Type;

    /// <summary>The request id, echoed in the reply (<c>req_id</c>).</summary>
    public readonly uint RequestId;

    /// <summary>The transaction id, 0 outside a transaction (<c>tx_id</c>).</summary>
    public readonly uint TransactionId;

    /// <summary>The payload length that follows the header (<c>len</c>).</summary>
    public readonly uint Length;

    /// <summary>Creates a header.</summary>
    public XsHeader(XsMessageType type, uint requestId, uint transactionId, uint length)
    {
        Type = type;
        RequestId = requestId;
        TransactionId = transactionId;
        Length = length;
    }

    /// <summary>Reads a header from the first 16 bytes of <paramref name="source"/>.</summary>
    public static XsHeader Read(ReadOnlySpan<byte> source) => new(
        (XsMessageType)BinaryPrimitives.ReadUInt32LittleEndian(source),
        BinaryPrimitives.ReadUInt32LittleEndian(source[4..]),
        BinaryPrimitives.ReadUInt32LittleEndian(source[8..]),
        BinaryPrimitives.ReadUInt32LittleEndian(source[12..]));

    /// <summary>Writes the header into the first 16 bytes of <paramref name="destination"/>.</summary>
    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(destination, (uint)Type);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[4..], RequestId);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[8..], TransactionId);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[12..], Length);
    }

    /// <summary>True when the payload length respects <c>XENSTORE_PAYLOAD_MAX</c>.</summary>
    public bool IsLengthValid => Length <= XsConstants.PayloadMax;

    /// <inheritdoc/>
    public override string ToString() => $"{Type} req={RequestId} tx={TransactionId} len={Length}";
}
