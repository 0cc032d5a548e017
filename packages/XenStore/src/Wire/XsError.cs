namespace VmmKit.XenStore.Wire;

/// <summary>
/// The errors a XenStore daemon reports, with Linux errno values: the <c>xsd_errors</c> table of
/// <c>xen/io/xs_wire.h</c>. An <c>XS_ERROR</c> reply carries the name (for example <c>"ENOENT"</c>), not the number.
/// </summary>
public enum XsError
{
    /// <summary>No error.</summary>
    None = 0,
    /// <summary><c>EPERM</c>: operation not permitted (for example an unprivileged owner change).</summary>
    EPERM = 1,
    /// <summary><c>ENOENT</c>: no such node, transaction or domain.</summary>
    ENOENT = 2,
    /// <summary><c>EIO</c>: internal inconsistency.</summary>
    EIO = 5,
    /// <summary><c>E2BIG</c>: reply too large or too many watches.</summary>
    E2BIG = 7,
    /// <summary><c>EAGAIN</c>: a transaction conflicted and must be retried.</summary>
    EAGAIN = 11,
    /// <summary><c>ENOMEM</c>: out of memory or over the memory quota.</summary>
    ENOMEM = 12,
    /// <summary><c>EACCES</c>: permission denied.</summary>
    EACCES = 13,
    /// <summary><c>EBUSY</c>: busy (for example a transaction started inside a transaction).</summary>
    EBUSY = 16,
    /// <summary><c>EEXIST</c>: already exists.</summary>
    EEXIST = 17,
    /// <summary><c>EISDIR</c>: is a directory.</summary>
    EISDIR = 21,
    /// <summary><c>EINVAL</c>: malformed request.</summary>
    EINVAL = 22,
    /// <summary><c>ENOSPC</c>: over a quota (nodes, node size, transactions, permissions).</summary>
    ENOSPC = 28,
    /// <summary><c>EROFS</c>: read-only connection.</summary>
    EROFS = 30,
    /// <summary><c>ENOSYS</c>: unknown or unsupported message type.</summary>
    ENOSYS = 38,
    /// <summary><c>ENOTEMPTY</c>: directory not empty.</summary>
    ENOTEMPTY = 39,
    /// <summary><c>EISCONN</c>: already connected.</summary>
    EISCONN = 106,
}

/// <summary>Conversions between <see cref="XsError"/> and the errno names on the wire.</summary>
public static class XsErrors
{
    // xs_wire.h xsd_errors[], in table order (new errors are appended by Xen).
    private static readonly (XsError Error, byte[] Name, string Text)[] Table =
    [
        (XsError.EINVAL, "EINVAL\0"u8.ToArray(), "EINVAL"),
        (XsError.EACCES, "EACCES\0"u8.ToArray(), "EACCES"),
        (XsError.EEXIST, "EEXIST\0"u8.ToArray(), "EEXIST"),
        (XsError.EISDIR, "EISDIR\0"u8.ToArray(), "EISDIR"),
        (XsError.ENOENT, "ENOENT\0"u8.ToArray(), "ENOENT"),
        (XsError.ENOMEM, "ENOMEM\0"u8.ToArray(), "ENOMEM"),
        (XsError.ENOSPC, "ENOSPC\0"u8.ToArray(), "ENOSPC"),
        (XsError.EIO, "EIO\0"u8.ToArray(), "EIO"),
        (XsError.ENOTEMPTY, "ENOTEMPTY\0"u8.ToArray(), "ENOTEMPTY"),
        (XsError.ENOSYS, "ENOSYS\0"u8.ToArray(), "ENOSYS"),
        (XsError.EROFS, "EROFS\0"u8.ToArray(), "EROFS"),
        (XsError.EBUSY, "EBUSY\0"u8.ToArray(), "EBUSY"),
        (XsError.EAGAIN, "EAGAIN\0"u8.ToArray(), "EAGAIN"),
        (XsError.EISCONN, "EISCONN\0"u8.ToArray(), "EISCONN"),
        (XsError.E2BIG, "E2BIG\0"u8.ToArray(), "E2BIG"),
        (XsError.EPERM, "EPERM\0"u8.ToArray(), "EPERM"),
    ];

    /// <summary>The errno name <see cref="WireName"/> sends, without the NUL (a cached string).</summary>
    internal static string Name(XsError error)
    {
        foreach (var (e, _, text) in Table)
        {
            if (e == error)
                return text;
        }
        return Table[0].Text;
    }

    /// <summary>
    /// The NUL-terminated errno name sent in an <c>XS_ERROR</c> payload. Like xenstored's send_error,
    /// an error missing from the table is reported as <c>EINVAL</c>.
    /// </summary>
    public static ReadOnlySpan<byte> WireName(XsError error)
    {
        foreach (var (e, name, _) in Table)
        {
            if (e == error)
                return name;
        }
        return Table[0].Name;
    }

    /// <summary>Parses an <c>XS_ERROR</c> payload (with or without its NUL); unknown names give <see cref="XsError.EINVAL"/>.</summary>
    public static XsError FromWireName(ReadOnlySpan<byte> payload)
    {
        int nul = payload.IndexOf((byte)0);
        if (nul >= 0)
            payload = payload[..nul];
        foreach (var (e, name, _) in Table)
        {
            if (payload.SequenceEqual(name.AsSpan(0, name.Length - 1)))
                return e;
        }
        return XsError.EINVAL;
    }
}
