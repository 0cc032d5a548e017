using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Store;

/// <summary>
/// Path rules of xenstore.txt and xenstored's <c>canonicalize</c>: ASCII alphanumerics and <c>-/_@</c>,
/// absolute or relative to <c>/local/domain/&lt;domid&gt;</c>, no doubled or trailing slash, <c>@</c> first
/// only for special watch names, and the <c>XENSTORE_*_PATH_MAX</c> limits.
/// </summary>
public static class XsPath
{
    /// <summary>The special event fired on <c>XS_INTRODUCE</c>.</summary>
    public const string IntroduceDomain = "@introduceDomain";

    /// <summary>The special event fired on <c>XS_RELEASE</c> and domain shutdown.</summary>
    public const string ReleaseDomain = "@releaseDomain";

    private static readonly bool[] ValidChar = BuildValidChars();

    private static bool[] BuildValidChars()
    {
        var t = new bool[256];
        for (int c = 'a'; c <= 'z'; c++) t[c] = true;
        for (int c = 'A'; c <= 'Z'; c++) t[c] = true;
        for (int c = '0'; c <= '9'; c++) t[c] = true;
        t['-'] = t['/'] = t['_'] = t['@'] = true;
        return t;
    }

    /// <summary>The home path of a domain (<c>XS_GET_DOMAIN_PATH</c>).</summary>
    public static string DomainPath(uint domid) => "/local/domain/" + domid.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>
    /// Validates a path received from a client and makes it absolute. <paramref name="relative"/> is set
    /// when it was relative to <paramref name="domid"/>'s home. <paramref name="maxRelativeLength"/> is the
    /// caller's path-length quota (xenstored's <c>ACC_PATHLEN</c>), counted after <c>/local/domain/N/</c>.
    /// </summary>
    public static XsError Canonicalize(ReadOnlySpan<byte> raw, uint domid, bool allowSpecial, int maxRelativeLength, out string path, out bool relative)
    {
        path = "";
        relative = false;
        if (raw.IsEmpty || raw.Length > XsConstants.AbsPathMax)
            return XsError.EINVAL;
        foreach (byte b in raw)
        {
            if (!ValidChar[b])
                return XsError.EINVAL;
        }
        if (raw[0] == (byte)'@')
        {
            if (!allowSpecial)
                return XsError.EINVAL;
            path = string.Create(raw.Length, raw.ToArray(), static (s, b) => { for (int i = 0; i < s.Length; i++) s[i] = (char)b[i]; });
            return XsError.None;
        }
        Span<char> chars = stackalloc char[raw.Length + 32];
        var err = CanonicalizeInto(raw, domid, maxRelativeLength, chars, out int length, out relative);
        if (err == XsError.None)
            path = new string(chars[..length]);
        return err;
    }

    /// <summary>
    /// The allocation-free form of <see cref="Canonicalize"/> for ordinary (non-special) paths: writes the
    /// absolute path into <paramref name="destination"/> (at least <paramref name="raw"/>'s length + 32 chars).
    /// </summary>
    public static XsError CanonicalizeInto(ReadOnlySpan<byte> raw, uint domid, int maxRelativeLength, Span<char> destination, out int length, out bool relative)
    {
        length = 0;
        relative = false;
        if (raw.IsEmpty || raw.Length > XsConstants.AbsPathMax || raw[0] == (byte)'@')
            return XsError.EINVAL;
        foreach (byte b in raw)
        {
            if (!ValidChar[b])
                return XsError.EINVAL;
        }
        int prefixLength = 0;
        if (raw[0] != (byte)'/')
        {
            // "/local/domain/<domid>/" + raw
            "/local/domain/".CopyTo(destination);
            prefixLength = 14;
            domid.TryFormat(destination[prefixLength..], out int digits, default, System.Globalization.CultureInfo.InvariantCulture);
            prefixLength += digits;
            destination[prefixLength++] = '/';
            relative = true;
        }
        int total = prefixLength + raw.Length;
        if (total > XsConstants.AbsPathMax)
            return XsError.EINVAL;
        // No trailing slash except the root, no doubled slash.
        if (raw[^1] == (byte)'/' && !(raw.Length == 1 && !relative))
            return XsError.EINVAL;
        if (raw.IndexOf("//"u8) >= 0)
            return XsError.EINVAL;
        for (int i = 0; i < raw.Length; i++)
            destination[prefixLength + i] = (char)raw[i];
        ReadOnlySpan<char> full = destination[..total];
        if (LocalOffset(full) is int local && full.Length - local > maxRelativeLength)
            return XsError.EINVAL;
        length = total;
        return XsError.None;
    }

    /// <summary>
    /// Offset just past <c>/local/domain/&lt;n&gt;/</c> when <paramref name="path"/> is below a domain's home
    /// (xenstored's <c>sscanf("/local/domain/%5u/%n")</c>), else 0.
    /// </summary>
    internal static int LocalOffset(ReadOnlySpan<char> path)
    {
        const string Prefix = "/local/domain/";
        if (!path.StartsWith(Prefix, StringComparison.Ordinal))
            return 0;
        int i = Prefix.Length, digits = 0;
        while (i < path.Length && char.IsAsciiDigit(path[i]) && digits < 5) { i++; digits++; }
        if (digits == 0 || i >= path.Length || path[i] != '/')
            return 0;
        return i + 1;
    }

    /// <summary>True when <paramref name="child"/> is <paramref name="parent"/> or below it (xenstore.txt's child relation).</summary>
    public static bool IsChild(string child, string parent)
    {
        if (parent == "/")
            return child.Length > 0 && child[0] == '/';
        return child.StartsWith(parent, StringComparison.Ordinal)
            && (child.Length == parent.Length || child[parent.Length] == '/');
    }

    /// <summary>Makes an absolute path relative to <paramref name="domid"/>'s home, for relative watches.</summary>
    public static string MakeRelative(string path, uint domid)
    {
        string home = DomainPath(domid) + "/";
        return path.StartsWith(home, StringComparison.Ordinal) ? path[home.Length..] : path;
    }
}
