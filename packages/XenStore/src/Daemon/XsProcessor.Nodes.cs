using System.Globalization;
using VmmKit.XenStore.Store;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Daemon;

/// <summary>Node operations: READ, WRITE, MKDIR, RM, DIRECTORY, DIRECTORY_PART, GET_PERMS, SET_PERMS (core.c).</summary>
internal sealed unsafe partial class XsProcessor
{
    private XsError PathArg(XsConnection c, ReadOnlySpan<byte> raw, out string path)
    {
        var err = XsPath.Canonicalize(raw, c.DomainId, allowSpecial: false,
            QuotasFor(c).PathLength, out path, out _);
        return err;
    }

    /// <summary>Outside transactions, an existing readable node is found without allocating.</summary>
    private XsNode? FastLookup(XsConnection c, ref XsRequest r, ReadOnlySpan<byte> raw)
    {
        if (r.Transaction is not null)
            return null;
        Span<char> chars = stackalloc char[raw.Length + 32];
        if (XsPath.CanonicalizeInto(raw, c.DomainId, QuotasFor(c).PathLength, chars, out int length, out _) != XsError.None)
            return null;
        return Store.TryGetAccessible(c.Caller, chars[..length], XsAccess.Read);
    }

    private static XsError DoRead(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        if (!XsPayload.TryOneArg(r.Payload, out var raw))
            return XsError.EINVAL;
        if (p.FastLookup(c, ref r, raw) is { } found)
            return p.Reply(c, ref r, found.Value);
        var err = p.PathArg(c, raw, out var path);
        if (err != XsError.None)
            return err;
        err = p.Store.Lookup(c.Caller, path, XsAccess.Read, r.Transaction, out var node);
        return err != XsError.None ? err : p.Reply(c, ref r, node!.Value);
    }

    private static XsError DoWrite(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        // WRITE <path>|<value|>: the value is everything after the first NUL and may contain NULs.
        int nul = r.Payload.IndexOf((byte)0);
        if (nul < 0)
            return XsError.EINVAL;
        var err = p.PathArg(c, r.Payload[..nul], out var path);
        if (err != XsError.None)
            return err;
        err = p.Store.Write(c.Caller, path, r.Payload[(nul + 1)..], r.Transaction);
        return err != XsError.None ? err : p.Ack(c, ref r);
    }

    private static XsError DoMkdir(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        if (!XsPayload.TryOneArg(r.Payload, out var raw))
            return XsError.EINVAL;
        var err = p.PathArg(c, raw, out var path);
        if (err != XsError.None)
            return err;
        err = p.Store.Mkdir(c.Caller, path, r.Transaction);
        return err != XsError.None ? err : p.Ack(c, ref r);
    }

    private static XsError DoRm(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        if (!XsPayload.TryOneArg(r.Payload, out var raw))
            return XsError.EINVAL;
        var err = p.PathArg(c, raw, out var path);
        if (err != XsError.None)
            return err;
        err = p.Store.Remove(c.Caller, path, r.Transaction);
        return err != XsError.None ? err : p.Ack(c, ref r);
    }

    private static XsError DoDirectory(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        if (!XsPayload.TryOneArg(r.Payload, out var raw))
            return XsError.EINVAL;
        if (p.FastLookup(c, ref r, raw) is { } found)
            return p.ReplyChildren(c, ref r, found);
        var err = p.PathArg(c, raw, out var path);
        if (err != XsError.None)
            return err;
        err = p.Store.Lookup(c.Caller, path, XsAccess.Read, r.Transaction, out var node);
        if (err != XsError.None)
            return err;
        return p.ReplyChildren(c, ref r, node!);
    }

    private XsError ReplyChildren(XsConnection c, ref XsRequest r, XsNode node)
    {
        if (node.ChildrenLength > XsConstants.PayloadMax)
            return XsError.E2BIG;
        Span<byte> buffer = stackalloc byte[XsConstants.PayloadMax];
        int len = node.WriteChildren(buffer);
        return Reply(c, ref r, buffer[..len]);
    }

    /// <summary>
    /// DIRECTORY_PART <c>&lt;path&gt;|&lt;offset&gt;|</c> → <c>&lt;gencnt&gt;|&lt;children from offset&gt;</c>, with an
    /// extra empty string once the list is complete (send_directory_part).
    /// </summary>
    private static XsError DoDirectoryPart(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        if (XsPayload.CountStrings(r.Payload) != 2)
            return XsError.EINVAL;
        int at = 0;
        XsPayload.TryNext(r.Payload, ref at, out var raw);
        XsPayload.TryNext(r.Payload, ref at, out var offText);
        var err = p.PathArg(c, raw, out var path);
        if (err != XsError.None)
            return err;
        err = p.Store.Lookup(c.Caller, path, XsAccess.Read, r.Transaction, out var node);
        if (err != XsError.None)
            return err;
        // core.c send_directory_part: "off = atoi(...)" into an unsigned int, so " 5" and "+5" are 5, "-5" is far
        // behind the list and 2^32 wraps to 0.
        uint off = XsCNumber.Atoi(offText);
        var children = new byte[node!.ChildrenLength];
        node.WriteChildren(children);
        string gen = node.Generation.ToString(CultureInfo.InvariantCulture);
        Span<byte> reply = stackalloc byte[XsConstants.PayloadMax];
        int genLen = gen.Length + 1;
        for (int i = 0; i < gen.Length; i++)
            reply[i] = (byte)gen[i];
        reply[gen.Length] = 0;
        if (off >= children.Length)
        {
            reply[genLen] = 0;
            return p.Reply(c, ref r, reply[..(genLen + 1)]);
        }
        int start = (int)off;
        int maxLen = XsConstants.PayloadMax - genLen - 1;
        int len = 0;
        while (start + len < children.Length)
        {
            int end = Array.IndexOf(children, (byte)0, start + len);
            int next = end + 1 - start;
            if (next > maxLen)
                break;
            len = next;
        }
        if (len == 0)
            return XsError.E2BIG;
        children.AsSpan(start, len).CopyTo(reply[genLen..]);
        int total = genLen + len;
        if (start + len == children.Length)
            reply[total++] = 0;
        return p.Reply(c, ref r, reply[..total]);
    }

    private static XsError DoGetPerms(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        if (!XsPayload.TryOneArg(r.Payload, out var raw))
            return XsError.EINVAL;
        var err = XsPath.Canonicalize(raw, c.DomainId, allowSpecial: false, p.QuotasFor(c).PathLength, out var path, out _);
        if (err != XsError.None)
            return err;
        err = p.Store.Lookup(c.Caller, path, XsAccess.Read, r.Transaction, out var node);
        if (err != XsError.None)
            return err;
        Span<byte> buffer = stackalloc byte[XsConstants.PayloadMax];
        int len = 0;
        foreach (var perm in node!.Perms)
        {
            string s = perm.ToString();
            if (len + s.Length + 1 > buffer.Length)
                return XsError.E2BIG;
            foreach (char ch in s)
                buffer[len++] = (byte)ch;
            buffer[len++] = 0;
        }
        return p.Reply(c, ref r, buffer[..len]);
    }

    /// <summary>
    /// Permissions of the special watch names (domain.c dom_introduce_perms/dom_release_perms): who may see
    /// their events. Dom0 only by default (<c>n0</c>).
    /// </summary>
    private readonly Dictionary<string, XsPermission[]> _specialPerms = new(StringComparer.Ordinal)
    {
        [XsPath.IntroduceDomain] = [new XsPermission(0, XsAccess.None)],
        [XsPath.ReleaseDomain] = [new XsPermission(0, XsAccess.None)],
    };

    /// <summary>The permissions of the special names, by name (saved and restored with the state).</summary>
    public Dictionary<string, XsPermission[]> SpecialPermissions => _specialPerms;

    /// <summary>domain.c set_perms_special: only the two special names (EINVAL), by whoever has write and owner on them (EACCES).</summary>
    private XsError SetSpecialPermissions(XsConnection c, ref XsRequest r, ReadOnlySpan<byte> raw, XsPermission[] perms)
    {
        if (!_specialPerms.TryGetValue(Ascii(raw), out var current))
            return XsError.EINVAL;
        if ((c.Caller.AccessTo(current) & (XsAccess.Write | XsAccess.Owner)) != (XsAccess.Write | XsAccess.Owner))
            return XsError.EACCES;
        _specialPerms[Ascii(raw)] = perms;
        return Ack(c, ref r);
    }

    /// <summary>
    /// domain.c remove_domid_from_perm on both special names when a domain goes (XSA-322's rule): its entries are
    /// removed and an owner that was it becomes dom0, so a domain that reuses the id inherits nothing.
    /// </summary>
    private void ForgetSpecialPermissions(uint domid)
    {
        foreach (var name in (string[])[XsPath.IntroduceDomain, XsPath.ReleaseDomain])
        {
            var perms = _specialPerms[name];
            var kept = new List<XsPermission>(perms.Length) { perms[0].DomainId == domid ? perms[0] with { DomainId = 0 } : perms[0] };
            for (int i = 1; i < perms.Length; i++)
            {
                if (perms[i].DomainId != domid)
                    kept.Add(perms[i]);
            }
            _specialPerms[name] = [.. kept];
        }
    }

    /// <summary>check_perms_special: the connection may read the special name's permissions.</summary>
    private bool MaySeeSpecial(XsConnection c, string name) =>
        _specialPerms.TryGetValue(name, out var perms) && (c.Caller.AccessTo(perms) & XsAccess.Read) != 0;

    private static XsError DoSetPerms(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        // SET_PERMS <path>|<perm-as-string>|+
        int count = XsPayload.CountStrings(r.Payload);
        if (count < 2)
            return XsError.EINVAL;
        int at = 0;
        XsPayload.TryNext(r.Payload, ref at, out var raw);
        var perms = new XsPermission[count - 1];
        if (!c.Privileged && perms.Length > p.QuotasFor(c).Permissions)
            return XsError.ENOSPC;
        for (int i = 0; i < perms.Length; i++)
        {
            XsPayload.TryNext(r.Payload, ref at, out var text);
            if (!XsPermission.TryParse(text, out perms[i]))
                return XsError.EINVAL;
        }
        // domain_alloc_permrefs, before the path is even looked at: every domain named gets a struct (this
        // daemon cannot ask the hypervisor, so every id below DOMID_FIRST_RESERVED counts as existing).
        foreach (var perm in perms)
            p.Store.ReferenceDomain(perm.DomainId);
        // do_set_perms: an owner that is no domain (XS_PERM_IGNORE from domain_alloc_permrefs) is ENOENT before
        // the "@" names and the path are looked at; ids at or above DOMID_FIRST_RESERVED never are one.
        if (perms[0].DomainId >= XsConstants.DomidFirstReserved)
            return XsError.ENOENT;
        if (!raw.IsEmpty && raw[0] == (byte)'@')
            return p.SetSpecialPermissions(c, ref r, raw, perms);
        var err = p.PathArg(c, raw, out var path);
        if (err != XsError.None)
            return err;
        err = p.Store.SetPermissions(c.Caller, path, perms, r.Transaction);
        return err != XsError.None ? err : p.Ack(c, ref r);
    }
}
