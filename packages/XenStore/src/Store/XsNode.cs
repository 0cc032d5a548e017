namespace VmmKit.XenStore.Store;

/// <summary>
/// One node of the tree: its value, permissions and the names of its children in creation order
/// (xenstored's <c>struct node</c>). A node inside a transaction is a private copy until commit.
/// </summary>
internal sealed class XsNode
{
    public XsNode(string path, byte[] value, XsPermission[] perms)
    {
        Path = path;
        Value = value;
        Perms = perms;
        Children = [];
    }

    /// <summary>Canonical absolute path.</summary>
    public string Path { get; }

    public byte[] Value { get; set; }

    public XsPermission[] Perms { get; set; }

    public List<string> Children { get; private set; }

    /// <summary>Sum of (child name length + 1): the size of xenstored's NUL-separated child list.</summary>
    public int ChildrenLength { get; private set; }

    /// <summary>Global generation count of the last change (xenstored's <c>hdr.generation</c>); 0 = never stored.</summary>
    public ulong Generation { get; set; }

    /// <summary>
    /// This object was stored in the committed tree (its permissions are then read through domain.c
    /// domain_adjust_node_perms); false for a transaction's private copy or a node not stored yet.
    /// </summary>
    public bool Committed { get; set; }

    public uint Owner => Perms[0].DomainId;

    /// <summary>What this node object is currently charged to its owner's quota (null = not in the tree).</summary>
    public (uint Owner, long Memory)? Charge { get; set; }

    /// <summary>xenstored's entry size used for the node-size quota: data, child list and permissions.</summary>
    public int EntrySize => Value.Length + ChildrenLength + Perms.Length * XsPermission.AccountedSize;

    /// <summary>Bytes accounted to the owner's memory quota.</summary>
    /// <summary><c>sizeof(struct xs_tdb_record_hdr)</c>: generation, permission count, data and children lengths, padded.</summary>
    public const int RecordHeaderSize = 24;

    /// <summary>The record xenstored writes and checks against the node-size quota (core.c write_node_raw: header, permissions, data, children).</summary>
    public int RecordSize => RecordHeaderSize + EntrySize;

    /// <summary>The record of a new node with <paramref name="permissions"/> entries and <paramref name="payload"/> bytes of data or children.</summary>
    public static int NewRecordSize(int permissions, int payload) => RecordHeaderSize + permissions * XsPermission.AccountedSize + payload;

    public long MemorySize => EntrySize + Path.Length + 64;

    public void AddChild(string name)
    {
        Children.Add(name);
        ChildrenLength += name.Length + 1;
    }

    public void RemoveChild(string name)
    {
        if (Children.Remove(name))
            ChildrenLength -= name.Length + 1;
    }

    public XsNode Clone()
    {
        var copy = new XsNode(Path, Value, Perms) { Generation = Generation };
        copy.Children = new List<string>(Children);
        copy.ChildrenLength = ChildrenLength;
        return copy;
    }

    /// <summary>The last path component (the node must not be the root).</summary>
    public static string BaseName(string path) => path[(path.LastIndexOf('/') + 1)..];

    /// <summary>The parent path, "/" for top-level nodes (xenstored's <c>get_parent</c>).</summary>
    public static string ParentOf(string path)
    {
        int slash = path.LastIndexOf('/');
        return slash <= 0 ? "/" : path[..slash];
    }

    /// <summary>Writes the child list as NUL-terminated names (the DIRECTORY reply).</summary>
    public int WriteChildren(Span<byte> destination)
    {
        int at = 0;
        foreach (var c in Children)
        {
            for (int i = 0; i < c.Length; i++)
                destination[at++] = (byte)c[i];
            destination[at++] = 0;
        }
        return at;
    }
}
