namespace VmmKit.XenStore.Wire;

/// <summary>What <see cref="XsFrameReader.TryRead"/> found in the buffered input.</summary>
public enum XsFrameStatus
{
    /// <summary>More bytes are needed for a whole message.</summary>
    NeedMore,
    /// <summary>A whole message is available.</summary>
    Frame,
    /// <summary>
    /// The header announces a payload longer than <c>XENSTORE_PAYLOAD_MAX</c>: the stream can no longer be
    /// trusted, and xenstored drops such a connection (<c>XENSTORE_ERROR_PROTO</c>).
    /// </summary>
    Oversized,
}

/// <summary>
/// Splits a byte stream into XenStore messages (<c>struct xsd_sockmsg</c> + payload). It never trusts
/// the header: a length above <c>XENSTORE_PAYLOAD_MAX</c> is reported before any payload is buffered.
/// </summary>
public static class XsFrameReader
{
    /// <summary>
    /// Looks for one message at the start of <paramref name="input"/>. On <see cref="XsFrameStatus.Frame"/>,
    /// <paramref name="header"/> and <paramref name="payload"/> describe it and <paramref name="consumed"/>
    /// is its total size.
    /// </summary>
    public static XsFrameStatus TryRead(ReadOnlySpan<byte> input, out XsHeader header, out ReadOnlySpan<byte> payload, out int consumed)
    {
        payload = default;
        consumed = 0;
        if (input.Length < XsConstants.HeaderSize)
        {
            header = default;
            return XsFrameStatus.NeedMore;
        }
        header = XsHeader.Read(input);
        if (!header.IsLengthValid)
            return XsFrameStatus.Oversized;
        int total = XsConstants.HeaderSize + (int)header.Length;
        if (input.Length < total)
            return XsFrameStatus.NeedMore;
        payload = input.Slice(XsConstants.HeaderSize, (int)header.Length);
        consumed = total;
        return XsFrameStatus.Frame;
    }

    /// <summary>True when <paramref name="input"/> is a sequence of complete messages and nothing else.</summary>
    internal static bool IsWholeFrames(ReadOnlySpan<byte> input)
    {
        while (!input.IsEmpty)
        {
            if (TryRead(input, out _, out _, out int consumed) != XsFrameStatus.Frame)
                return false;
            input = input[consumed..];
        }
        return true;
    }
}
