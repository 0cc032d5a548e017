namespace VmmKit.XenStore.Store;

/// <summary>
/// Per-domain limits with xenstored's defaults (tools/xenstored/core.c and domain.c). They apply to
/// unprivileged connections; dom0 and socket connections are exempt, as in xenstored, except from the
/// path length, which core.c's is_valid_nodename checks for every caller.
/// </summary>
public sealed class XenStoreQuotas
{
    /// <summary>Nodes a domain may own (<c>quota_nb_entry_per_domain</c>, "nodes"); over it: ENOSPC.</summary>
    public int Nodes { get; set; } = 1000;

    /// <summary>Largest node entry in bytes: data, child list, permissions (<c>quota_max_entry_size</c>, "node-size"); ENOSPC.</summary>
    public int NodeSize { get; set; } = 2048;

    /// <summary>Watches per domain (<c>quota_nb_watch_per_domain</c>, "watches"); over it: E2BIG.</summary>
    public int Watches { get; set; } = 128;

    /// <summary>Open transactions per connection (<c>quota_max_transaction</c>, "transactions"); ENOSPC.</summary>
    public int Transactions { get; set; } = 10;

    /// <summary>Nodes one transaction may touch (<c>quota_trans_nodes</c>, "transaction-nodes"); ENOSPC.</summary>
    public int TransactionNodes { get; set; } = 1024;

    /// <summary>Requests whose replies are not yet consumed (<c>quota_req_outstanding</c>, "outstanding"); further input waits.</summary>
    public int Outstanding { get; set; } = 20;

    /// <summary>Permission entries per node (<c>quota_nb_perms_per_node</c>, "permissions"); ENOSPC.</summary>
    public int Permissions { get; set; } = 5;

    /// <summary>
    /// Path length, counted after <c>/local/domain/N/</c> when below a domain's home (<c>quota_max_path_len</c>,
    /// "path-length"); EINVAL. Applies to privileged callers too (core.c is_valid_nodename).
    /// </summary>
    public int PathLength { get; set; } = Wire.XsConstants.RelPathMax;

    /// <summary>Memory a domain may use in the daemon, bytes (<c>quota_memory_per_domain_hard</c>, "memory"); ENOMEM.</summary>
    public long Memory { get; set; } = 2 * 1024 * 1024 + 512 * 1024;

    /// <summary>
    /// Watch-event bytes kept for a client that stopped reading (see <see cref="StoppedReadingAfter"/>); further
    /// events are dropped until it reads again. A client that reads gets every event, however many one message fires.
    /// </summary>
    public int EventBacklogBytes { get; set; } = 256 * 1024;

    /// <summary>
    /// A client has stopped reading when a write to it has not completed for this long; only then does
    /// <see cref="EventBacklogBytes"/> apply. Not part of xenstored's quotas (it drops a domain's events that stay
    /// unwritten for 20 s); not carried in saved states.
    /// </summary>
    public TimeSpan StoppedReadingAfter { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>The quota names used by <c>XS_GET_QUOTA</c>/<c>XS_SET_QUOTA</c> and the CONTROL "quota" command.</summary>
    public static IReadOnlyList<string> Names { get; } =
        ["nodes", "node-size", "watches", "transactions", "transaction-nodes", "outstanding", "permissions", "path-length", "memory"];

    /// <summary>Reads a quota by name; false for an unknown name.</summary>
    public bool TryGet(string name, out long value)
    {
        value = name switch
        {
            "nodes" => Nodes,
            "node-size" => NodeSize,
            "watches" => Watches,
            "transactions" => Transactions,
            "transaction-nodes" => TransactionNodes,
            "outstanding" => Outstanding,
            "permissions" => Permissions,
            "path-length" => PathLength,
            "memory" => Memory,
            _ => -1,
        };
        return value >= 0;
    }

    /// <summary>Sets a quota by name; false for an unknown name or a value out of range.</summary>
    public bool TrySet(string name, long value)
    {
        if (value < 0 || value > int.MaxValue)
            return false;
        int v = (int)value;
        switch (name)
        {
            case "nodes": Nodes = v; break;
            case "node-size": NodeSize = v; break;
            case "watches": Watches = v; break;
            case "transactions": Transactions = v; break;
            case "transaction-nodes": TransactionNodes = v; break;
            case "outstanding": Outstanding = v; break;
            case "permissions": Permissions = v; break;
            case "path-length": PathLength = v; break;
            case "memory": Memory = value; break;
            default: return false;
        }
        return true;
    }

    /// <summary>A copy with the same values.</summary>
    public XenStoreQuotas Clone() => (XenStoreQuotas)MemberwiseClone();
}
