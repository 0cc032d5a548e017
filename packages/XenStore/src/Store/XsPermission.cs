using System.Text;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Store;

/// <summary>Access bits of a node permission (<c>XS_PERM_*</c> in xenstore_lib.h).</summary>
[Flags]
public enum XsAccess : byte
{
    /// <summary><c>n</c>: no access.</summary>
    None = 0,
    /// <summary><c>r</c>: read.</summary>
    Read = 1,
    /// <summary><c>w</c>: write.</summary>
    Write = 2,
    /// <summary><c>b</c>: read and write.</summary>
    Both = Read | Write,
    /// <summary><c>XS_PERM_OWNER</c>: may change the permissions (never on the wire).</summary>
    Owner = 8,
    /// <summary><c>XS_PERM_IGNORE</c>: the entry names a domain that is gone; still listed, never matched (never on the wire).</summary>
    Ignore = 16,
}

/// <summary>
/// One entry of a node's permission list (<c>struct xs_permissions</c>): the first entry names the owner
/// and the access every domain not listed gets; later entries grant a specific domain its access.
/// On the wire it is a letter and a domain id, for example <c>r5</c> or <c>b0</c> (xenstore.txt GET_PERMS).
/// </summary>
public readonly record struct XsPermission(uint DomainId, XsAccess Access)
{
    /// <summary>Bytes a permission costs in xenstored's node accounting (<c>sizeof(struct xs_permissions)</c>).</summary>
    internal const int AccountedSize = 8;

    /// <summary>
    /// Parses <c>n5</c>, <c>r0</c>, <c>w7</c> or <c>b3</c> as xenstore_lib.c's xs_strings_to_perms does: the
    /// domid through <c>strtol(p, &amp;end, 0)</c> (so <c>0x10</c>, <c>010</c>, <c>+1</c> and <c>-1</c> parse),
    /// nothing after it, truncated to 32 bits.
    /// </summary>
    public static bool TryParse(ReadOnlySpan<byte> text, out XsPermission permission)
    {
        permission = default;
        if (text.Length < 2)
            return false;
        XsAccess access;
        switch (text[0])
        {
            case (byte)'n': access = XsAccess.None; break;
            case (byte)'r': access = XsAccess.Read; break;
            case (byte)'w': access = XsAccess.Write; break;
            case (byte)'b': access = XsAccess.Both; break;
            default: return false;
        }
        if (!XsCNumber.TryStrtol(text[1..], out uint id))
            return false;
        permission = new XsPermission(id, access);
        return true;
    }

    /// <summary>The wire letter: <c>n</c>, <c>r</c>, <c>w</c> or <c>b</c>.</summary>
    public char Letter => (Access & XsAccess.Both) switch
    {
        XsAccess.Read => 'r',
        XsAccess.Write => 'w',
        XsAccess.Both => 'b',
        _ => 'n',
    };

    /// <summary>Parses a permission string such as <c>"r5"</c>.</summary>
    public static XsPermission Parse(string text) =>
        TryParse(Encoding.ASCII.GetBytes(text), out var p) ? p : throw new FormatException($"'{text}' is not a XenStore permission");

    /// <inheritdoc/>
    public override string ToString() => $"{Letter}{(int)DomainId}";   // xs_perm_to_string prints "%c%i"
}
