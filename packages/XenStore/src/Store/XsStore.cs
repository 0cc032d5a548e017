using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Store;

/// <summary>Receives the watch events of committed changes.</summary>
internal interface IXsEventSink
{
    void Fire(string path, XsPermission[] perms, XsPermission[]? oldPerms, bool exact);
}

/// <summary>
/// The node tree and its operations with xenstored's semantics (tools/xenstored/core.c): permission
/// checks that do not leak a node's existence, implicit parent creation, subtree removal with an explicit
/// stack, per-domain node and memory accounting, and transactions as private overlays checked by
/// generation at commit. Not thread-safe: the daemon serialises all calls, as xenstored is single-threaded.
/// </summary>
internal sealed class XsStore
{
    private readonly Dictionary<string, XsNode> _nodes = new(StringComparer.Ordinal);
    private readonly Dictionary<string, XsNode>.AlternateLookup<ReadOnlySpan<char>> _byChars;
    private readonly Dictionary<uint, (int Nodes, long Memory)> _usage = [];
    private readonly Dictionary<uint, long> _watchMemory = [];
    private ulong _generation;

    public XsStore(XenStoreQuotas quotas, IXsEventSink events)
    {
        Quotas = quotas;
        Events = events;
        _byChars = _nodes.GetAlternateLookup<ReadOnlySpan<char>>();
        // xenstored's setup_structure: "/", "/tool" and "/tool/xenstored", owned by dom0 with no access for others.
        var none = new[] { new XsPermission(0, XsAccess.None) };
        foreach (var p in new[] { "/", "/tool", "/tool/xenstored" })
        {
            var n = new XsNode(p, [], none);
            if (p != "/")
            {
                var parent = _nodes[XsNode.ParentOf(p)];
                parent.AddChild(XsNode.BaseName(p));
            }
            Commit(n);
        }
    }

    public XenStoreQuotas Quotas { get; set; }

    public IXsEventSink Events { get; set; }

    public int NodeCount => _nodes.Count;

    public ulong Generation => _generation;

    public IEnumerable<XsNode> AllNodes => _nodes.Values;

    public int NodesOwnedBy(uint domid) => _usage.TryGetValue(domid, out var u) ? u.Nodes : 0;

    /// <summary>A domain's accounted memory: its nodes and, as in xenstored's watch.c, its watches' paths and tokens.</summary>
    public long MemoryOf(uint domid) =>
        (_usage.TryGetValue(domid, out var u) ? u.Memory : 0) + (_watchMemory.TryGetValue(domid, out long w) ? w : 0);

    /// <summary>Adds (or, negative, releases) memory a domain's watches use.</summary>
    public void AddWatchMemory(uint domid, long delta)
    {
        long now = (_watchMemory.TryGetValue(domid, out long w) ? w : 0) + delta;
        if (now == 0)
            _watchMemory.Remove(domid);
        else
            _watchMemory[domid] = now;
    }

    // ---- Raw access (base tree or a transaction's view) -------------------------------------

    public XsNode? Get(string path, XsTransaction? tx)
    {
        if (tx is null)
            return _nodes.GetValueOrDefault(path);
        if (tx.Overlay.TryGetValue(path, out var mine))
            return mine;
        var node = _nodes.GetValueOrDefault(path);
        tx.Accessed.TryAdd(path, node?.Generation ?? 0);
        return node;
    }

    /// <summary>
    /// The allocation-free read path outside transactions: the node if it exists and the caller may access
    /// it with <paramref name="need"/>; null sends the caller down the full <see cref="Lookup"/> for the exact error.
    /// </summary>
    public XsNode? TryGetAccessible(in XsCaller caller, ReadOnlySpan<char> path, XsAccess need) =>
        _byChars.TryGetValue(path, out var node) && (caller.AccessTo(node.Perms) & need) == need ? node : null;

    /// <summary>A node the caller may change: a copy (base tree copy-on-write keeps accounting exact; a transaction keeps it private).</summary>
    private XsNode Writable(XsNode node, XsTransaction? tx)
    {
        if (tx is not null && tx.Overlay.TryGetValue(node.Path, out var mine) && ReferenceEquals(mine, node))
            return node;
        if (tx is not null)
            tx.Accessed.TryAdd(node.Path, _nodes.GetValueOrDefault(node.Path)?.Generation ?? 0);
        return node.Clone();
    }

    private void Put(XsNode node, XsTransaction? tx)
    {
        if (tx is null)
            Commit(node);
        else
            tx.Overlay[node.Path] = node;
    }

    private void Delete(XsNode node, XsTransaction? tx)
    {
        if (tx is null)
        {
            Uncommit(node.Path);
            return;
        }
        tx.Accessed.TryAdd(node.Path, _nodes.GetValueOrDefault(node.Path)?.Generation ?? 0);
        tx.Overlay[node.Path] = null;
        tx.AddDelta(node.Owner, -1);
    }

    private void Commit(XsNode node)
    {
        if (_nodes.TryGetValue(node.Path, out var old))
            Uncharge(old);
        node.Generation = ++_generation;
        _nodes[node.Path] = node;
        Charge(node);
    }

    private void Uncommit(string path)
    {
        if (_nodes.Remove(path, out var old))
            Uncharge(old);
    }

    private void Charge(XsNode node)
    {
        long mem = node.MemorySize;
        node.Charge = (node.Owner, mem);
        var u = _usage.GetValueOrDefault(node.Owner);
        _usage[node.Owner] = (u.Nodes + 1, u.Memory + mem);
    }

    private void Uncharge(XsNode node)
    {
        if (node.Charge is not { } c)
            return;
        node.Charge = null;
        var u = _usage.GetValueOrDefault(c.Owner);
        _usage[c.Owner] = (u.Nodes - 1, u.Memory - c.Memory);
    }

    private void Fire(XsTransaction? tx, string path, XsPermission[] perms, XsPermission[]? oldPerms, bool exact)
    {
        if (tx is null)
            Events.Fire(path, perms, oldPerms, exact);
        else
            tx.Events.Add(new XsPendingEvent(path, perms, oldPerms, exact));
    }

    // ---- Permission-checked lookup -----------------------------------------------------------

    /// <summary>
    /// xenstored's get_node + get_node_chk_perm + errno_from_parents: a missing node reports ENOENT only
    /// when the nearest existing ancestor grants some of <paramref name="need"/>, otherwise EACCES, so the
    /// error never reveals what a caller cannot see.
    /// </summary>
    private XsError LookupCore(in XsCaller caller, string path, XsAccess need, XsTransaction? tx, out XsNode? node)
    {
        node = Get(path, tx);
        if (node is not null)
        {
            if ((caller.AccessTo(node.Perms) & need) == need)
                return XsError.None;
            node = null;
            return XsError.EACCES;
        }
        if (path.Length > 0 && path[0] == '@')
            return XsError.ENOENT;
        string name = path;
        XsNode? ancestor = null;
        while (name != "/")
        {
            name = XsNode.ParentOf(name);
            ancestor = Get(name, tx);
            if (ancestor is not null)
                break;
        }
        if (ancestor is null)
            return XsError.EACCES;
        return (caller.AccessTo(ancestor.Perms) & need) != 0 ? XsError.ENOENT : XsError.EACCES;
    }

    /// <summary>
    /// quota_trans_nodes: a transaction that has touched too many nodes fails the operation with ENOSPC
    /// and can no longer commit.
    /// </summary>
    private XsError Bounded(in XsCaller caller, XsTransaction? tx, XsError err)
    {
        if (err == XsError.None && tx is not null && !caller.Privileged && tx.Accessed.Count + tx.Overlay.Count > Quotas.TransactionNodes)
        {
            tx.Failed = true;
            return XsError.ENOSPC;
        }
        return err;
    }

    /// <summary>Permission-checked lookup; see <see cref="LookupCore"/>.</summary>
    public XsError Lookup(in XsCaller caller, string path, XsAccess need, XsTransaction? tx, out XsNode? node)
    {
        var err = Bounded(caller, tx, LookupCore(caller, path, need, tx, out node));
        if (err != XsError.None)
            node = null;
        return err;
    }

    /// <summary>XS_WRITE; see <see cref="WriteCore"/>.</summary>
    public XsError Write(in XsCaller caller, string path, ReadOnlySpan<byte> value, XsTransaction? tx) =>
        Bounded(caller, tx, WriteCore(caller, path, value, tx));

    /// <summary>XS_MKDIR; see <see cref="MkdirCore"/>.</summary>
    public XsError Mkdir(in XsCaller caller, string path, XsTransaction? tx) => Bounded(caller, tx, MkdirCore(caller, path, tx));

    /// <summary>XS_RM; see <see cref="RemoveCore"/>.</summary>
    public XsError Remove(in XsCaller caller, string path, XsTransaction? tx) => Bounded(caller, tx, RemoveCore(caller, path, tx));

    /// <summary>XS_SET_PERMS; see <see cref="SetPermissionsCore"/>.</summary>
    public XsError SetPermissions(in XsCaller caller, string path, XsPermission[] perms, XsTransaction? tx) =>
        Bounded(caller, tx, SetPermissionsCore(caller, path, perms, tx));

    // ---- Operations --------------------------------------------------------------------------

    /// <summary>XS_WRITE: set the value, creating the node and missing parents (write access to the nearest existing ancestor).</summary>
    private XsError WriteCore(in XsCaller caller, string path, ReadOnlySpan<byte> value, XsTransaction? tx)
    {
        var err = LookupCore(caller, path, XsAccess.Write, tx, out var node);
        if (err == XsError.None)
        {
            if (!caller.Privileged && node!.EntrySize - node.Value.Length + value.Length >= Quotas.NodeSize)
                return XsError.ENOSPC;
            if (!caller.Privileged && MemoryOf(caller.DomainId) + value.Length - node!.Value.Length > Quotas.Memory)
                return XsError.ENOMEM;
            var w = Writable(node!, tx);
            w.Value = value.ToArray();
            Put(w, tx);
            Fire(tx, path, w.Perms, null, false);
            return XsError.None;
        }
        if (err != XsError.ENOENT)
            return err;
        if (path == "/")
            return XsError.EINVAL;
        err = Create(caller, path, value, tx, out var created);
        if (err != XsError.None)
            return err;
        Fire(tx, path, created!.Perms, null, false);
        return XsError.None;
    }

    /// <summary>XS_MKDIR: make sure the node exists; an existing node is left alone.</summary>
    private XsError MkdirCore(in XsCaller caller, string path, XsTransaction? tx)
    {
        var err = LookupCore(caller, path, XsAccess.Write, tx, out _);
        if (err == XsError.None)
            return XsError.None;
        if (err != XsError.ENOENT)
            return err;
        err = Create(caller, path, [], tx, out var created);
        if (err != XsError.None)
            return err;
        Fire(tx, path, created!.Perms, null, false);
        return XsError.None;
    }

    /// <summary>xenstored's construct_node: walk up to an existing ancestor, then create downwards inheriting its permissions.</summary>
    private XsError Create(in XsCaller caller, string path, ReadOnlySpan<byte> value, XsTransaction? tx, out XsNode? created)
    {
        created = null;
        var missing = new List<string>();
        string name = path;
        XsNode? parent = null;
        while (parent is null)
        {
            missing.Add(name);
            if (name == "/")
                return XsError.EIO;
            name = XsNode.ParentOf(name);
            parent = Get(name, tx);
        }
        uint owner = caller.Privileged ? parent.Owner : caller.DomainId;
        if (!caller.Privileged)
        {
            int owned = NodesOwnedBy(owner) + (tx?.DeltaFor(owner) ?? 0);
            if (owned + missing.Count > Quotas.Nodes)
                return XsError.ENOSPC;
            if (value.Length + parent.Perms.Length * XsPermission.AccountedSize >= Quotas.NodeSize)
                return XsError.ENOSPC;
            if (parent.EntrySize + XsNode.BaseName(missing[^1]).Length + 1 >= Quotas.NodeSize)
                return XsError.ENOSPC;
            long mem = MemoryOf(owner) + value.Length;
            foreach (var m in missing)
                mem += m.Length + 64;
            if (mem > Quotas.Memory)
                return XsError.ENOMEM;
        }
        var p = Writable(parent, tx);
        for (int i = missing.Count - 1; i >= 0; i--)
        {
            string child = missing[i];
            p.AddChild(XsNode.BaseName(child));
            Put(p, tx);
            var perms = (XsPermission[])p.Perms.Clone();
            // "Inherit permissions, unpriv domains own what they create."
            if (!caller.Privileged)
                perms[0] = perms[0] with { DomainId = caller.DomainId };
            var n = new XsNode(child, i == 0 ? value.ToArray() : [], perms);
            tx?.Accessed.TryAdd(child, 0);
            tx?.AddDelta(n.Owner, 1);
            p = n;
        }
        Put(p, tx);
        created = p;
        return XsError.None;
    }

    /// <summary>XS_RM: remove a node and its subtree; a missing node is fine when its parent exists.</summary>
    private XsError RemoveCore(in XsCaller caller, string path, XsTransaction? tx)
    {
        var err = LookupCore(caller, path, XsAccess.Write, tx, out var node);
        if (err == XsError.ENOENT)
            return Get(XsNode.ParentOf(path), tx) is not null ? XsError.None : XsError.ENOENT;
        if (err != XsError.None)
            return err;
        if (path == "/")
            return XsError.EINVAL;
        var parent = Get(XsNode.ParentOf(path), tx);
        if (parent is null)
            return XsError.EIO;

        // Post-order walk with an explicit stack (no recursion a client could drive deep).
        var stack = new Stack<(XsNode Node, bool Expanded)>();
        stack.Push((node!, false));
        while (stack.Count > 0)
        {
            var (n, expanded) = stack.Pop();
            if (!expanded)
            {
                stack.Push((n, true));
                foreach (var c in n.Children)
                {
                    var child = Get(n.Path == "/" ? "/" + c : n.Path + "/" + c, tx);
                    if (child is not null)
                        stack.Push((child, false));
                }
                continue;
            }
            // Fire while the node's permissions are still visible (delnode_sub).
            Fire(tx, n.Path, n.Perms, null, !ReferenceEquals(n, node));
            Delete(n, tx);
        }
        var w = Writable(parent, tx);
        w.RemoveChild(XsNode.BaseName(path));
        Put(w, tx);
        return XsError.None;
    }

    /// <summary>XS_SET_PERMS: needs write and ownership; only the privileged may change the owner.</summary>
    private XsError SetPermissionsCore(in XsCaller caller, string path, XsPermission[] perms, XsTransaction? tx)
    {
        if (!caller.Privileged && perms.Length > Quotas.Permissions)
            return XsError.ENOSPC;
        var err = LookupCore(caller, path, XsAccess.Write | XsAccess.Owner, tx, out var node);
        if (err != XsError.None)
            return err;
        if (!caller.Privileged && perms[0].DomainId != node!.Owner)
            return XsError.EPERM;
        if (!caller.Privileged && node!.EntrySize + (perms.Length - node.Perms.Length) * XsPermission.AccountedSize >= Quotas.NodeSize)
            return XsError.ENOSPC;
        var old = node!.Perms;
        var w = Writable(node, tx);
        w.Perms = perms;
        if (tx is not null && old[0].DomainId != perms[0].DomainId)
        {
            tx.AddDelta(old[0].DomainId, -1);
            tx.AddDelta(perms[0].DomainId, 1);
        }
        Put(w, tx);
        Fire(tx, path, perms, old, false);
        return XsError.None;
    }

    // ---- Transactions ------------------------------------------------------------------------

    /// <summary>
    /// Commits a transaction: EAGAIN if any node it looked at changed since (its generation differs or it
    /// appeared/disappeared), ENOSPC if the commit would put an unprivileged domain over its node quota.
    /// </summary>
    public XsError CommitTransaction(XsTransaction tx, Func<uint, bool> isUnprivileged)
    {
        if (tx.Failed)
            return XsError.EAGAIN;
        foreach (var (path, gen) in tx.Accessed)
        {
            ulong now = _nodes.TryGetValue(path, out var n) ? n.Generation : 0;
            if (now != gen)
                return XsError.EAGAIN;
        }
        foreach (var (domid, delta) in tx.NodeDelta)
        {
            if (delta > 0 && isUnprivileged(domid) && NodesOwnedBy(domid) + delta > Quotas.Nodes)
                return XsError.ENOSPC;
        }
        foreach (var (path, node) in tx.Overlay)
        {
            if (node is null)
                Uncommit(path);
            else
                Commit(node);
        }
        foreach (var e in tx.Events)
            Events.Fire(e.Path, e.Perms, e.OldPerms, e.Exact);
        return XsError.None;
    }

    // ---- Domain lifecycle ----------------------------------------------------------------------

    /// <summary>
    /// After a domain is released: nodes it owned pass to dom0 and its permission entries are dropped,
    /// so a later domain reusing the id inherits nothing (XSA-322). Iterative, no recursion.
    /// </summary>
    public void ForgetDomain(uint domid)
    {
        var touched = new List<XsNode>();
        foreach (var n in _nodes.Values)
        {
            foreach (var p in n.Perms)
            {
                if (p.DomainId == domid)
                {
                    touched.Add(n);
                    break;
                }
            }
        }
        foreach (var n in touched)
        {
            var list = new List<XsPermission>(n.Perms.Length);
            for (int i = 0; i < n.Perms.Length; i++)
            {
                var p = n.Perms[i];
                if (i == 0 && p.DomainId == domid)
                    list.Add(p with { DomainId = 0 });
                else if (i == 0 || p.DomainId != domid)
                    list.Add(p);
            }
            var w = n.Clone();
            w.Perms = [.. list];
            Commit(w);
        }
    }

    // ---- State restore -----------------------------------------------------------------------

    /// <summary>Replaces the whole tree with restored nodes (children lists included) and the generation counter.</summary>
    public void Restore(IEnumerable<XsNode> nodes, ulong generation)
    {
        _nodes.Clear();
        _usage.Clear();
        foreach (var n in nodes)
        {
            _nodes[n.Path] = n;
            Charge(n);
        }
        _generation = generation;
    }

    internal void AddRestoredChild(XsNode node, string child) => node.AddChild(child);
}
