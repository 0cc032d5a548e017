namespace VmmKit.XenStore.Wire;

/// <summary>
/// Helpers for XenStore payloads: sequences of NUL-terminated strings (xenstore.txt notation
/// <c>&lt;foo&gt;|</c>). Nothing here allocates.
/// </summary>
public static class XsPayload
{
    /// <summary>
    /// The single argument of a one-argument request (xenstored's <c>onearg</c>): the payload must contain
    /// exactly one NUL, at its end. Returns false otherwise.
    /// </summary>
    public static bool TryOneArg(ReadOnlySpan<byte> payload, out ReadOnlySpan<byte> arg)
    {
        int nul = payload.IndexOf((byte)0);
        if (payload.IsEmpty || nul != payload.Length - 1)
        {
            arg = default;
            return false;
        }
        arg = payload[..nul];
        return true;
    }

    /// <summary>The number of NUL-terminated strings in <paramref name="payload"/> (xenstored's <c>xenstore_count_strings</c>).</summary>
    public static int CountStrings(ReadOnlySpan<byte> payload) => payload.Count((byte)0);

    /// <summary>
    /// Takes the next NUL-terminated string starting at <paramref name="offset"/> and advances past its NUL.
    /// Returns false when no terminated string is left.
    /// </summary>
    public static bool TryNext(ReadOnlySpan<byte> payload, scoped ref int offset, out ReadOnlySpan<byte> value)
    {
        if ((uint)offset >= (uint)payload.Length)
        {
            value = default;
            return false;
        }
        int nul = payload[offset..].IndexOf((byte)0);
        if (nul < 0)
        {
            value = default;
            return false;
        }
        value = payload.Slice(offset, nul);
        offset += nul + 1;
        return true;
    }

    /// <summary>Parses an unsigned decimal (no sign, no spaces, at most <paramref name="max"/>); false on anything else.</summary>
    public static bool TryParseUInt(ReadOnlySpan<byte> text, ulong max, out ulong value)
    {
        value = 0;
        if (text.IsEmpty || text.Length > 20)
            return false;
        foreach (byte b in text)
        {
            if (b < '0' || b > '9')
                return false;
            ulong next = value * 10 + (ulong)(b - '0');
            if (next < value || next > max)
                return false;
            value = next;
        }
        return true;
    }

    /// <summary>Parses a decimal that may carry a leading minus sign (an INTRODUCE mfn is "signed decimal (!)").</summary>
    public static bool TryParseLong(ReadOnlySpan<byte> text, out long value)
    {
        bool negative = !text.IsEmpty && text[0] == (byte)'-';
        if (!TryParseUInt(negative ? text[1..] : text, long.MaxValue, out ulong magnitude))
        {
            value = 0;
            return false;
        }
        value = negative ? -(long)magnitude : (long)magnitude;
        return true;
    }
}
