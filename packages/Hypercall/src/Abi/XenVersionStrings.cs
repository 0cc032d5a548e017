using System.Runtime.CompilerServices;
using System.Text;

namespace VmmKit.Hypercall;

/// <summary><c>xen_extraversion_t</c> (xen/version.h): <c>char[16]</c>, NUL-terminated.</summary>
[InlineArray(Length)]
public struct XenExtraversion
{
    /// <summary><c>XEN_EXTRAVERSION_LEN</c>.</summary>
    public const int Length = 16;
    private byte _element0;
}

/// <summary><c>xen_capabilities_info_t</c> (xen/version.h): <c>char[1024]</c>, NUL-terminated.</summary>
[InlineArray(Length)]
public struct XenCapabilitiesInfo
{
    /// <summary><c>XEN_CAPABILITIES_INFO_LEN</c>.</summary>
    public const int Length = 1024;
    private byte _element0;
}

/// <summary><c>xen_changeset_info_t</c> (xen/version.h): <c>char[64]</c>, NUL-terminated.</summary>
[InlineArray(Length)]
public struct XenChangesetInfo
{
    /// <summary><c>XEN_CHANGESET_INFO_LEN</c>.</summary>
    public const int Length = 64;
    private byte _element0;
}

/// <summary><c>xen_commandline_t</c> (xen/version.h): <c>char[1024]</c>, NUL-terminated.</summary>
[InlineArray(Length)]
public struct XenCommandline
{
    /// <summary>Size of the buffer.</summary>
    public const int Length = 1024;
    private byte _element0;
}

/// <summary><c>xen_domain_handle_t</c> (xen/xen.h): the domain's 16-byte UUID, returned by <c>XENVER_guest_handle</c>.</summary>
[InlineArray(Length)]
public struct XenDomainHandle
{
    /// <summary>Size of the handle.</summary>
    public const int Length = 16;
    private byte _element0;
}

/// <summary>Fills and reads the fixed-size NUL-terminated <c>char</c> arrays of the Xen ABI.</summary>
public static class XenString
{
    /// <summary>
    /// Writes <paramref name="value"/> as ASCII/UTF-8 into <paramref name="destination"/>, truncated so
    /// that a NUL terminator always fits (Xen's <c>safe_strcpy</c>), and zero-fills the rest.
    /// </summary>
    /// <param name="destination">The <c>char[N]</c> buffer.</param>
    /// <param name="value">The text.</param>
    /// <returns>Bytes written before the terminator.</returns>
    public static int Write(Span<byte> destination, ReadOnlySpan<char> value)
    {
        destination.Clear();
        if (destination.IsEmpty)
            return 0;
        Span<byte> room = destination[..^1];
        int written = 0;
        Span<byte> encoded = stackalloc byte[4];
        foreach (Rune rune in value.EnumerateRunes())
        {
            int n = rune.EncodeToUtf8(encoded);
            if (written + n > room.Length)
                break;
            encoded[..n].CopyTo(room[written..]);
            written += n;
        }
        return written;
    }

    /// <summary>Reads the text before the first NUL (or the whole buffer when none).</summary>
    /// <param name="source">The <c>char[N]</c> buffer.</param>
    /// <returns>The text.</returns>
    public static string Read(ReadOnlySpan<byte> source)
    {
        int end = source.IndexOf((byte)0);
        return Encoding.UTF8.GetString(end < 0 ? source : source[..end]);
    }
}
