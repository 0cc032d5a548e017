namespace VmmKit.XenStore.Wire;

/// <summary>
/// The C library number parsing xenstored applies to message arguments, so odd inputs get the answers
/// Xen's daemon gives: <c>atoi</c> for domain ids (domain.c) and <c>strtol(p, &amp;end, 0)</c> for
/// permission domids (xenstore_lib.c xs_strings_to_perms), both truncated to 32 bits as xenstored stores them.
/// </summary>
public static class XsCNumber
{
    private static bool IsSpace(byte b) => b is (byte)' ' or (byte)'\t' or (byte)'\n' or (byte)'\v' or (byte)'\f' or (byte)'\r';

    /// <summary>C <c>atoi</c> as glibc implements it (<c>(int)strtol(s, NULL, 10)</c>), as the unsigned int xenstored assigns it to.</summary>
    public static uint Atoi(ReadOnlySpan<byte> text)
    {
        Parse(text, 10, out long value, out _);
        return (uint)(int)value;
    }

    /// <summary>
    /// C <c>strtol(text, &amp;end, 0)</c> with xenstored's check <c>if (*end || !*text)</c>: false when the
    /// text is empty or has anything after the number. The value is truncated to 32 bits.
    /// </summary>
    public static bool TryStrtol(ReadOnlySpan<byte> text, out uint value)
    {
        bool consumed = Parse(text, 0, out long v, out int end);
        value = (uint)v;
        return !text.IsEmpty && consumed && end == text.Length;
    }

    /// <summary>strtol: whitespace, sign, base prefix (base 0), digits; saturates at long.MinValue/MaxValue. end = chars used (0 when no digits).</summary>
    private static bool Parse(ReadOnlySpan<byte> s, int numberBase, out long value, out int end)
    {
        value = 0;
        end = 0;
        int i = 0;
        while (i < s.Length && IsSpace(s[i]))
            i++;
        bool negative = false;
        if (i < s.Length && (s[i] == (byte)'+' || s[i] == (byte)'-'))
            negative = s[i++] == (byte)'-';
        if (numberBase == 0)
        {
            if (i + 1 < s.Length && s[i] == (byte)'0' && (s[i + 1] | 0x20) == (byte)'x' && i + 2 < s.Length && Digit(s[i + 2]) < 16)
            {
                numberBase = 16;
                i += 2;
            }
            else
            {
                numberBase = i < s.Length && s[i] == (byte)'0' ? 8 : 10;
            }
        }
        int start = i;
        ulong magnitude = 0;
        bool overflow = false;
        while (i < s.Length && Digit(s[i]) < numberBase)
        {
            ulong next = magnitude * (ulong)numberBase + (ulong)Digit(s[i]);
            if (next / (ulong)numberBase != magnitude || next > (ulong)long.MaxValue + 1)
                overflow = true;
            magnitude = next;
            i++;
        }
        if (i == start)
            return false;
        end = i;
        if (overflow || (!negative && magnitude > long.MaxValue))
            value = negative ? long.MinValue : long.MaxValue;
        else
            value = negative ? -(long)magnitude : (long)magnitude;
        return true;
    }

    private static int Digit(byte b) => b switch
    {
        >= (byte)'0' and <= (byte)'9' => b - '0',
        >= (byte)'a' and <= (byte)'z' => b - 'a' + 10,
        >= (byte)'A' and <= (byte)'Z' => b - 'A' + 10,
        _ => 99,
    };
}
