using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Store;

/// <summary>Receives the watch events of committed changes.</summary>
internal interface IXsEventSink
{
    /// <summary>
    /// A change to <paramref name="path"/>. A connection may see it when it can read under
    /// <paramref name="givenPerms"/> (old permissions of a SET_PERMS, or a deleted node's), the node's
    /// permissions, or its parent's (watch.c watch_permitted); null means not available.
    /// </summary>
    void Fire(string path, XsPermission[]? givenPerms, XsPermission[]? nodePerms, XsPermission[]? parentPerms, bool exact);
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
    private readonly Dictionary<uint, long> _transactionMemory = [];
    private ulong _generation;

    /// <summary>
    /// xenstored's <c>struct domain</c> list as far as permissions care: domid → the generation count when
    /// the struct was allocated (domain.c alloc_domain). dom0's exists from the start.
    /// </summary>
    private readonly Dictionary<uint, ulong> _domainGenerations = new() { [0] = 0 };

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

    /// <summary>
    /// Nodes written or deleted outside a transaction so far (each a modifying <c>access_node</c>): what the daemon's
    /// write rate limit charges.
    /// </summary>
    public long DirectWrites { get; private set; }

    public IEnumerable<XsNode> AllNodes => _nodes.Values;

    public int NodesOwnedBy(uint domid) => _usage.TryGetValue(domid, out var u) ? u.Nodes : 0;

    /// <summary>
    /// A domain's accounted memory: its nodes, as in xenstored's watch.c its watches' paths and tokens, and the
    /// copies of nodes its open transactions hold (XSA-326: a transaction is no way around the quota).
    /// </summary>
    public long MemoryOf(uint domid) =>
        (_usage.TryGetValue(domid, out var u) ? u.Memory : 0) + (_watchMemory.TryGetValue(domid, out long w) ? w : 0)
        + (_transactionMemory.TryGetValue(domid, out long t) ? t : 0);

    /// <summary>Adds (or, negative, releases) memory a domain's watches use.</summary>
    public void AddWatchMemory(uint domid, long delta)
    {
        long now = (_watchMemory.TryGetValue(domid, out long w) ? w : 0) + delta;
        if (now == 0)
            _watchMemory.Remove(domid);
        else
            _watchMemory[domid] = now;
    }

    /// <summary>
    /// Charges <paramref name="copy"/> (null: none, a deletion) as the transaction's version of <paramref name="path"/>
    /// to the transaction's domain, replacing the previous charge (xenstored's do_tdb_write, get_acc_domid).
    /// </summary>
    private void ChargeCopy(XsTransaction tx, string path, XsNode? copy)
    {
        if (tx.Charges.Remove(path, out long old))
            AddTransactionMemory(tx.DomainId, -old);
        if (copy is null)
            return;
        long mem = copy.MemorySize;
        tx.Charges[path] = mem;
        AddTransactionMemory(tx.DomainId, mem);
    }

    private void AddTransactionMemory(uint domid, long delta)
    {
        long now = (_transactionMemory.TryGetValue(domid, out long t) ? t : 0) + delta;
        if (now == 0)
            _transactionMemory.Remove(domid);
        else
            _transactionMemory[domid] = now;
    }

    /// <summary>A transaction ends (committed, discarded, or dropped with its connection): its copies are no longer charged.</summary>
    public void EndTransaction(XsTransaction tx)
    {
        foreach (long mem in tx.Charges.Values)
            AddTransactionMemory(tx.DomainId, -mem);
        tx.Charges.Clear();
    }

    /// <summary>What changing <paramref name="node"/> in <paramref name="tx"/> adds at once: its whole copy on the first change.</summary>
    private static long CopyCost(XsNode node, XsTransaction? tx) =>
        tx is not null && !tx.Charges.ContainsKey(node.Path) ? node.MemorySize : 0;

    // ---- Raw access (base tree or a transaction's view) -------------------------------------

    public XsNode? Get(string path, XsTransaction? tx)
    {
        if (tx is null)
            return _nodes.GetValueOrDefault(path);
        if (tx.Overlay.TryGetValue(path, out var mine))
            return mine;
        // transaction.c access_node: a node read in a transaction is copied there, so later reads see the
        // same version (committed nodes are never changed in place, so keeping the object is the copy).
        if (tx.Seen.TryGetValue(path, out var seen))
            return seen;
        var node = _nodes.GetValueOrDefault(path);
        tx.Accessed.TryAdd(path, node?.Generation ?? 0);
        tx.Seen[path] = node;
        return node;
    }

    /// <summary>
    /// The allocation-free read path outside transactions: the node if it exists and the caller may access
    /// it with <paramref name="need"/>; null sends the caller down the full <see cref="Lookup"/> for the exact error.
    /// </summary>
    public XsNode? TryGetAccessible(in XsCaller caller, ReadOnlySpan<char> path, XsAccess need) =>
        _byChars.TryGetValue(path, out var node) && (caller.AccessTo(PermsOf(node)) & need) == need ? node : null;

    // ---- Permission entries naming stale domains (XSA-322) -------------------------------------

    /// <summary>
    /// domain.c alloc_domain via find_or_alloc_domain (XS_INTRODUCE) and domain_alloc_permrefs (XS_SET_PERMS
    /// naming the domain): a domain without a struct gets one stamped with the current generation count,
    /// one that has a struct keeps it (and its older stamp). The generation is that of the last node written,
    /// so a node written just before still counts as not older than the domain (xenstored 4.17 agrees).
    /// </summary>
    public void ReferenceDomain(uint domid)
    {
        if (domid < XsConstants.DomidFirstReserved)
            _domainGenerations.TryAdd(domid, _generation);
    }

    /// <summary>domain.c find_domain_struct: the domain has a struct (introduced, or named by a permission).</summary>
    public bool HasDomainStruct(uint domid) => _domainGenerations.ContainsKey(domid);

    /// <summary>domain.c destroy_domain (XS_RELEASE): the struct goes; entries naming the domain are stale from now on.</summary>
    private void FreeDomain(uint domid)
    {
        if (domid != 0)
            _domainGenerations.Remove(domid);
    }

    /// <summary>
    /// domain.c chk_domain_generation: an entry naming <paramref name="domid"/> still counts on a node of
    /// generation <paramref name="generation"/> only if the domain has a struct that is not younger than the node.
    /// </summary>
    private bool DomainPredates(uint domid, ulong generation) =>
        _domainGenerations.TryGetValue(domid, out ulong born) && born <= generation;

    /// <summary>
    /// A node's permissions as xenstored's read_node returns them (domain.c domain_adjust_node_perms): entries
    /// 1..n naming a domain that has no struct, or one younger than the node, get XS_PERM_IGNORE. Decided per
    /// access, not stored: a domain struct allocated later can make an entry count again when the node is the
    /// newest. Writing the node stores the flags (<see cref="Writable"/>), and children inherit them
    /// (construct_node copies the parent as read). A transaction's private copies are taken as they are.
    /// Saved state records them so (a restore cannot tell which entries had gone stale).
    /// </summary>
    public XsPermission[] PermsOf(XsNode node)
    {
        var perms = node.Perms;
        if (!node.Committed)
            return perms;
        XsPermission[]? adjusted = null;
        for (int i = 1; i < perms.Length; i++)
        {
            if ((perms[i].Access & XsAccess.Ignore) != 0 || DomainPredates(perms[i].DomainId, node.Generation))
                continue;
            adjusted ??= (XsPermission[])perms.Clone();
            adjusted[i] = perms[i] with { Access = perms[i].Access | XsAccess.Ignore };
        }
        return adjusted ?? perms;
    }

    /// <summary>The permissions of the committed node at <paramref name="path"/> as read (<see cref="PermsOf"/>), or null.</summary>
    private XsPermission[]? CommittedPerms(string path) => _nodes.TryGetValue(path, out var n) ? PermsOf(n) : null;

    /// <summary>A node the caller may change: a copy (base tree copy-on-write keeps accounting exact; a transaction keeps it private).</summary>
    private XsNode Writable(XsNode node, XsTransaction? tx)
    {
        if (tx is not null && tx.Overlay.TryGetValue(node.Path, out var mine) && ReferenceEquals(mine, node))
            return node;
        if (tx is not null)
            Remember(tx, node.Path);
        // write_node stores the permissions as read_node adjusted them (stale entries stay ignored).
        var copy = node.Clone();
        copy.Perms = PermsOf(node);
        return copy;
    }

    /// <summary>core.c write_node: a record that cannot be written inside a transaction dooms it (fail_transaction): END T is ENOMEM.</summary>
    private static XsError WriteFailed(XsTransaction? tx, XsError err)
    {
        if (tx is not null)
            tx.Doomed = true;
        return err;
    }

    /// <summary>First access of <paramref name="path"/> in <paramref name="tx"/>: its generation (for the commit check) and version.</summary>
    private void Remember(XsTransaction tx, string path)
    {
        if (tx.Accessed.ContainsKey(path))
            return;
        var node = _nodes.GetValueOrDefault(path);
        tx.Accessed.Add(path, node?.Generation ?? 0);
        tx.Seen[path] = node;
    }

    private void Put(XsNode node, XsTransaction? tx)
    {
        if (tx is null)
        {
            DirectWrites++;
            Commit(node);
            return;
        }
        ChargeCopy(tx, node.Path, node);
        tx.Overlay[node.Path] = node;
    }

    private void Delete(XsNode node, XsTransaction? tx)
    {
        if (tx is null)
        {
            DirectWrites++;
            Uncommit(node.Path);
            return;
        }
        Remember(tx, node.Path);
        ChargeCopy(tx, node.Path, null);
        tx.Overlay[node.Path] = null;
        tx.AddDelta(node.Owner, -1);
    }

    private void Commit(XsNode node)
    {
        if (_nodes.TryGetValue(node.Path, out var old))
            Uncharge(old);
        node.Generation = ++_generation;
        node.Committed = true;
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
            Events.Fire(path, oldPerms, perms, ParentPerms(path), exact);
        else
            tx.AddEvent(path, perms, oldPerms, exact);
    }

    private XsPermission[]? ParentPerms(string path) => path == "/" ? null : CommittedPerms(XsNode.ParentOf(path));

    /// <summary>
    /// transaction.c finalize_transaction: one event per changed node, in the order the transaction first
    /// touched them, exact only if every change was exact; permissions are looked up after the commit
    /// (fire_watches with node == NULL) besides those the node had when the transaction first saw it.
    /// </summary>
    private void FireCommitted(XsTransaction tx)
    {
        if (tx.Events.Count == 0)
            return;
        foreach (var path in tx.Accessed.Keys)
        {
            if (!tx.Events.TryGetValue(path, out var m))
                continue;
            var node = _nodes.GetValueOrDefault(path);
            var first = tx.Seen.GetValueOrDefault(path) is { } seen ? PermsOf(seen) : null;
            Events.Fire(path, first ?? m.OldPerms, node is null ? null : PermsOf(node), node is null ? null : ParentPerms(path), m.Exact);
        }
    }

    // ---- Permission-checked lookup -----------------------------------------------------------

    /// <summary>
    /// xenstored's get_node + get_node_chk_perm + errno_from_parents: a missing node reports ENOENT only
    /// when the nearest existing ancestor grants some of <paramref name="need"/>, otherwise EACCES, so the
    /// error never reveals what a caller cannot see (a write-only parent lets a child be created; Xen's
    /// xenstored 4.17 agrees in the differential tests).
    /// </summary>
    private XsError LookupCore(in XsCaller caller, string path, XsAccess need, XsTransaction? tx, out XsNode? node)
    {
        node = Get(path, tx);
        if (node is not null)
        {
            if ((caller.AccessTo(PermsOf(node)) & need) == need)
                return XsError.None;
            node = null;
            // get_node runs errno_from_parents for EACCES too: inside a transaction that reads (and so
            // records) the nearest existing ancestor, which a later change to it turns into EAGAIN.
            if (tx is not null && path != "/")
            {
                for (string up = XsNode.ParentOf(path); Get(up, tx) is null && up != "/"; up = XsNode.ParentOf(up))
                {
                }
            }
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
        return (caller.AccessTo(PermsOf(ancestor)) & need) != 0 ? XsError.ENOENT : XsError.EACCES;
    }

    /// <summary>
    /// quota_trans_nodes: a transaction that has touched too many nodes fails the operation with ENOSPC
    /// and can no longer commit. Every node it looked at or changed counts once (transaction.c access_node
    /// keeps one entry per node; everything changed was looked at first, so the overlay is a subset).
    /// </summary>
    private XsError Bounded(in XsCaller caller, XsTransaction? tx, XsError err)
    {
        if (err == XsError.None && tx is not null && !caller.Privileged && tx.Accessed.Count > Quotas.TransactionNodes)
        {
            tx.Doomed = true;
            return XsError.ENOSPC;
        }
        return err;
    }

    /// <summary>
    /// transaction.c access_node: a transaction at its node quota gets ENOSPC for the first access to a node
    /// it has not touched yet, before anything happens; it stays usable but is doomed: END T gives ENOMEM.
    /// </summary>
    private bool AtNodeQuota(in XsCaller caller, XsTransaction? tx, string path)
    {
        if (tx is null || caller.Privileged || tx.Accessed.Count < Quotas.TransactionNodes || tx.Accessed.ContainsKey(path))
            return false;
        tx.Doomed = true;
        return true;
    }

    /// <summary>Permission-checked lookup; see <see cref="LookupCore"/>.</summary>
    public XsError Lookup(in XsCaller caller, string path, XsAccess need, XsTransaction? tx, out XsNode? node)
    {
        if (AtNodeQuota(caller, tx, path))
        {
            node = null;
            return XsError.ENOSPC;
        }
        var err = Bounded(caller, tx, LookupCore(caller, path, need, tx, out node));
        if (err != XsError.None)
            node = null;
        return err;
    }

    /// <summary>XS_WRITE; see <see cref="WriteCore"/>.</summary>
    public XsError Write(in XsCaller caller, string path, ReadOnlySpan<byte> value, XsTransaction? tx) =>
        AtNodeQuota(caller, tx, path) ? XsError.ENOSPC : Bounded(caller, tx, WriteCore(caller, path, value, tx));

    /// <summary>XS_MKDIR; see <see cref="MkdirCore"/>.</summary>
    public XsError Mkdir(in XsCaller caller, string path, XsTransaction? tx) =>
        AtNodeQuota(caller, tx, path) ? XsError.ENOSPC : Bounded(caller, tx, MkdirCore(caller, path, tx));

    /// <summary>XS_RM; see <see cref="RemoveCore"/>.</summary>
    public XsError Remove(in XsCaller caller, string path, XsTransaction? tx) =>
        AtNodeQuota(caller, tx, path) ? XsError.ENOSPC : Bounded(caller, tx, RemoveCore(caller, path, tx));

    /// <summary>XS_SET_PERMS; see <see cref="SetPermissionsCore"/>.</summary>
    public XsError SetPermissions(in XsCaller caller, string path, XsPermission[] perms, XsTransaction? tx) =>
        AtNodeQuota(caller, tx, path) ? XsError.ENOSPC : Bounded(caller, tx, SetPermissionsCore(caller, path, perms, tx));

    // ---- Operations --------------------------------------------------------------------------

    /// <summary>XS_WRITE: set the value, creating the node and missing parents (write access to the nearest existing ancestor).</summary>
    private XsError WriteCore(in XsCaller caller, string path, ReadOnlySpan<byte> value, XsTransaction? tx)
    {
        var err = LookupCore(caller, path, XsAccess.Write, tx, out var node);
        if (err == XsError.None)
        {
            if (!caller.Privileged && node!.RecordSize - node.Value.Length + value.Length >= Quotas.NodeSize)
                return WriteFailed(tx, XsError.ENOSPC);
            if (!caller.Privileged && MemoryOf(caller.DomainId) + value.Length - node!.Value.Length + CopyCost(node, tx) > Quotas.Memory)
                return WriteFailed(tx, XsError.ENOMEM);
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
            // core.c create_node: domain_entry(conn) >= quota before each new node; inside a transaction that
            // is the committed count (its creations are counted at commit, transaction_fix_domains).
            int owned = NodesOwnedBy(owner);
            if (tx is null ? owned + missing.Count > Quotas.Nodes : owned >= Quotas.Nodes)
                return XsError.ENOSPC;
            // write_node_raw checks every record written: the parent gaining a child, each new node.
            if (parent.RecordSize + XsNode.BaseName(missing[^1]).Length + 1 >= Quotas.NodeSize)
                return WriteFailed(tx, XsError.ENOSPC);
            for (int i = 0; i < missing.Count; i++)
            {
                int payload = i == 0 ? value.Length : XsNode.BaseName(missing[i - 1]).Length + 1;
                if (XsNode.NewRecordSize(parent.Perms.Length, payload) >= Quotas.NodeSize)
                    return WriteFailed(tx, XsError.ENOSPC);
            }
            long mem = MemoryOf(owner) + value.Length;
            foreach (var m in missing)
                mem += m.Length + 64;
            if (tx?.DomainId == owner)
                mem += CopyCost(parent, tx);
            if (mem > Quotas.Memory)
                return WriteFailed(tx, XsError.ENOMEM);
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
            tx?.NodeCreated = true;
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
        // core.c _rm: a parent that cannot be read (gone in this transaction's view) is EINVAL.
        var parent = Get(XsNode.ParentOf(path), tx);
        if (parent is null)
            return XsError.EINVAL;
        return RemoveTree(node!, parent, tx);
    }

    /// <summary>
    /// core.c delete_node: children first, in child-list order (explicit stack, no recursion a client could
    /// drive deep), each firing only watches on exactly its path; the subtree's root fires as an ordinary
    /// change. As walk_node_tree does, each child is read only when the walk gets to it, so in a
    /// transaction's view a child listed twice (the view saw the parent list it while the child itself was
    /// gone, then the child was created again) is found deleted the second time. EIO when the tree is
    /// inconsistent in a transaction's view: a listed child that is gone stops the deletion there, and a
    /// parent that does not list the node fails delete_child; what was deleted so far stays deleted.
    /// </summary>
    private XsError RemoveTree(XsNode node, XsNode parent, XsTransaction? tx)
    {
        var stack = new Stack<(string Path, XsNode? Node, bool Expanded)>();
        stack.Push((node.Path, node, false));
        while (stack.Count > 0)
        {
            var (path, n, expanded) = stack.Pop();
            if (!expanded)
            {
                n ??= Get(path, tx);
                if (n is null)
                    return XsError.EIO;
                stack.Push((path, n, true));
                for (int i = n.Children.Count - 1; i >= 0; i--)
                    stack.Push((path == "/" ? "/" + n.Children[i] : path + "/" + n.Children[i], null, false));
                continue;
            }
            // Fire while the node's permissions are still visible (delnode_sub).
            Fire(tx, path, PermsOf(n!), null, !ReferenceEquals(n, node));
            Delete(n!, tx);
        }
        if (!parent.Children.Contains(XsNode.BaseName(node.Path)))
            return XsError.EIO;
        var w = Writable(parent, tx);
        w.RemoveChild(XsNode.BaseName(node.Path));
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
        // The new owner must exist (domain.c: the node count goes to its struct domain); ids at or above
        // DOMID_FIRST_RESERVED never do. Lower ids of domains that do not exist: README Known gaps.
        if (perms[0].DomainId >= XsConstants.DomidFirstReserved)
            return XsError.ENOENT;
        if (!caller.Privileged && node!.RecordSize + (perms.Length - node.Perms.Length) * XsPermission.AccountedSize >= Quotas.NodeSize)
            return WriteFailed(tx, XsError.ENOSPC);
        var old = PermsOf(node!);
        var w = Writable(node!, tx);
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
    /// Commits a transaction: ENOSPC if the commit would take an unprivileged domain to its node quota, then
    /// EAGAIN if any node it looked at changed since (its generation differs or it appeared/disappeared).
    /// </summary>
    public XsError CommitTransaction(XsTransaction tx, Func<uint, bool> isUnprivileged, bool committerUnprivileged)
    {
        if (tx.Failed)
            return XsError.EAGAIN;
        if (tx.Doomed)
            return XsError.ENOMEM;
        // transaction.c transaction_fix_domains, before the generations: when an unprivileged connection's
        // transaction created a node, every domain it changed must stay below the node quota.
        if (committerUnprivileged && tx.NodeCreated)
        {
            foreach (var (domid, delta) in tx.NodeDelta)
            {
                if (isUnprivileged(domid) && NodesOwnedBy(domid) + delta >= Quotas.Nodes)
                    return XsError.ENOSPC;
            }
        }
        foreach (var (path, gen) in tx.Accessed)
        {
            ulong now = _nodes.TryGetValue(path, out var n) ? n.Generation : 0;
            if (now != gen)
                return XsError.EAGAIN;
        }
        foreach (var (path, node) in tx.Overlay)
        {
            if (node is null)
                Uncommit(path);
            else
                Commit(node);
        }
        FireCommitted(tx);
        return XsError.None;
    }

    // ---- Domain lifecycle ----------------------------------------------------------------------

    /// <summary>
    /// After a domain is released: nodes it owned go and its permission entries no longer count, so a
    /// later domain reusing the id inherits nothing (XSA-322). Iterative, no recursion.
    /// </summary>
    public void ForgetDomain(uint domid)
    {
        // domain.c domain_tree_remove: every node the domain owns goes, with its subtree, as an RM would
        // (walk from the root in child order, not descending into what was removed).
        var walk = new Stack<string>();
        walk.Push("/");
        while (walk.Count > 0)
        {
            string path = walk.Pop();
            if (!_nodes.TryGetValue(path, out var n))
                continue;
            if (n.Owner == domid && path != "/")
            {
                RemoveTree(n, _nodes[XsNode.ParentOf(path)], null);   // the committed tree is consistent
                continue;
            }
            var children = n.Children.ToList();
            for (int i = children.Count - 1; i >= 0; i--)
                walk.Push(path == "/" ? "/" + children[i] : path + "/" + children[i]);
        }
        // XSA-322: then the struct goes, so entries naming the domain are ignored from now on and a domain
        // that reuses the id inherits nothing (PermsOf); nothing is rewritten.
        FreeDomain(domid);
    }

    // ---- State restore -----------------------------------------------------------------------

    /// <summary>
    /// Replaces the whole tree with restored nodes (children lists included) and the generation counter.
    /// Every domain the restored permissions still honour counts as older than every node (entries that
    /// were stale when the state was saved come back with XS_PERM_IGNORE set, see <see cref="PermsOf"/>).
    /// </summary>
    public void Restore(IEnumerable<XsNode> nodes, ulong generation)
    {
        _nodes.Clear();
        _usage.Clear();
        _domainGenerations.Clear();
        _domainGenerations[0] = 0;
        foreach (var n in nodes)
        {
            n.Committed = true;
            _nodes[n.Path] = n;
            Charge(n);
            foreach (var perm in n.Perms)
            {
                if ((perm.Access & XsAccess.Ignore) == 0 && perm.DomainId < XsConstants.DomidFirstReserved)
                    _domainGenerations.TryAdd(perm.DomainId, 0);
            }
        }
        _generation = generation;
    }

    internal void AddRestoredChild(XsNode node, string child) => node.AddChild(child);
}
