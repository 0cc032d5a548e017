namespace VmmKit.XenStore.Store;

/// <summary>
/// An open transaction (xenstored's transaction.c): private copies of the nodes it changed, the
/// generation of every node it looked at (for conflict detection at commit: a changed generation means
/// EAGAIN), its node-count deltas per domain, and the watch events it will fire if it commits.
/// </summary>
internal sealed class XsTransaction(uint id, uint domainId)
{
    public uint Id { get; } = id;

    /// <summary>The domain of the connection that started it: its private copies are charged to that domain.</summary>
    public uint DomainId { get; } = domainId;

    /// <summary>When it started (<see cref="Environment.TickCount64"/>): a live update waits for old transactions (lu.c).</summary>
    public long StartedAt { get; } = Environment.TickCount64;

    /// <summary>Path → private copy, or null for a node deleted inside the transaction.</summary>
    public Dictionary<string, XsNode?> Overlay { get; } = new(StringComparer.Ordinal);

    /// <summary>Path → generation seen at first access (0 = did not exist), in first-access order.</summary>
    public Dictionary<string, ulong> Accessed { get; } = new(StringComparer.Ordinal);

    /// <summary>Path → the committed version seen at first access (null = did not exist): what later reads see.</summary>
    public Dictionary<string, XsNode?> Seen { get; } = new(StringComparer.Ordinal);

    /// <summary>Owner domid → nodes created minus nodes deleted inside the transaction.</summary>
    public Dictionary<uint, int> NodeDelta { get; } = [];

    /// <summary>
    /// Path → the watch event the transaction fires for that node if it commits: one per changed node, however
    /// often it changed (transaction.c keeps one entry per node it accessed), so rewriting a node does not grow it.
    /// </summary>
    public Dictionary<string, XsPendingEvent> Events { get; } = new(StringComparer.Ordinal);

    /// <summary>transaction.c ta_node_created: a node was created inside the transaction (the commit checks node quotas).</summary>
    public bool NodeCreated { get; set; }

    /// <summary>Set when the transaction can no longer commit (restored after a restart, or an internal failure); END T gives EAGAIN.</summary>
    public bool Failed { get; set; }

    /// <summary>
    /// xenstored's <c>trans-&gt;fail</c>: an operation ran into the transaction's node quota. Later operations
    /// still run; END T answers ENOMEM (transaction.c do_transaction_end).
    /// </summary>
    public bool Doomed { get; set; }

    /// <summary>
    /// Path → what the transaction's private copy of that node is charged to <see cref="DomainId"/>'s memory while
    /// the transaction is open (xenstored writes the copy to its data base under a transaction key, which
    /// do_tdb_write accounts to the connection's domain, not the node's owner: XSA-326).
    /// </summary>
    public Dictionary<string, long> Charges { get; } = new(StringComparer.Ordinal);

    public int DeltaFor(uint domid) => NodeDelta.TryGetValue(domid, out int d) ? d : 0;

    public void AddDelta(uint domid, int delta) => NodeDelta[domid] = DeltaFor(domid) + delta;

    /// <summary>
    /// Records a change of <paramref name="path"/>: merged with an earlier one, it keeps the first old permissions
    /// given, takes the latest permissions, and stays exact only if every change was exact.
    /// </summary>
    public void AddEvent(string path, XsPermission[] perms, XsPermission[]? oldPerms, bool exact) =>
        Events[path] = Events.TryGetValue(path, out var m)
            ? new XsPendingEvent(path, perms, m.OldPerms ?? oldPerms, m.Exact && exact)
            : new XsPendingEvent(path, perms, oldPerms, exact);
}

/// <summary>A watch event waiting for its transaction to commit.</summary>
internal readonly record struct XsPendingEvent(string Path, XsPermission[] Perms, XsPermission[]? OldPerms, bool Exact);
