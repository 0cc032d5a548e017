using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using VmmKit.XenStore.Store;
using VmmKit.XenStore.Watches;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Daemon;

/// <summary>
/// Xen's own live-update state (tools/xenstore/include/xenstore_state.h, docs/designs/xenstore-migration.md),
/// as xenstored 4.17 writes and reads it in <c>state_dump</c>: a preamble (<c>"xenstore"</c>, big-endian
/// version 1, flags 0 = little endian), then records of a type, a length and a body padded to 8 bytes:
/// GLOBAL (listening socket fd, event channel fd), CONN (ring: domid, target, port; socket: fd; then the
/// unprocessed input and the output not yet written, the live-update "OK" included), WATCH and TA after
/// their connection, NODE (the special names first, then the tree, parents before children), END.
/// What the format cannot carry (quotas, domain features, generations, transaction contents) comes back as
/// defaults; open transactions come back failed (EAGAIN at commit), as in our own format.
/// </summary>
internal static class XsXenStateFormat
{
    // struct xs_state_preamble.
    private static ReadOnlySpan<byte> Ident => "xenstore"u8;
    private const uint Version = 1;
    private const int PreambleSize = 16;

    // struct xs_state_record_header.type.
    private const uint TypeEnd = 0;
    private const uint TypeGlobal = 1;
    private const uint TypeConnection = 2;
    private const uint TypeWatch = 3;
    private const uint TypeTransaction = 4;
    private const uint TypeNode = 5;

    // struct xs_state_connection.conn_type; DOMID_INVALID for "no target".
    private const ushort ConnRing = 0;
    private const ushort ConnSocket = 1;
    private const ushort DomidInvalid = 0x7ff4;
    private const byte PermIgnore = 0x01;
    private const int ConnectionFixedSize = 24;
    private const int NodeFixedSize = 16;

    /// <summary>True when <paramref name="state"/> starts with xenstored's preamble.</summary>
    public static bool IsXenState(ReadOnlySpan<byte> state) => state.Length >= Ident.Length && state[..Ident.Length].SequenceEqual(Ident);

    /// <summary>
    /// Writes the state for Xen's xenstored. <paramref name="listeners"/>' first entry is the listening socket
    /// (xenstored has one); <paramref name="reply"/> is queued as the requester's output, as lu.c does with "OK".
    /// </summary>
    public static byte[] Save(XsProcessor p, IReadOnlyList<(string Path, int Fd)> listeners, XsLiveUpdateReply? reply)
    {
        using var ms = new MemoryStream();
        Span<byte> preamble = stackalloc byte[PreambleSize];
        Ident.CopyTo(preamble);
        BinaryPrimitives.WriteUInt32BigEndian(preamble[8..], Version);
        BinaryPrimitives.WriteUInt32LittleEndian(preamble[12..], 0);
        ms.Write(preamble);

        var body = new List<byte>(64);
        void Record(uint type)
        {
            while (body.Count % 8 != 0)
                body.Add(0);
            Span<byte> header = stackalloc byte[8];
            BinaryPrimitives.WriteUInt32LittleEndian(header, type);
            BinaryPrimitives.WriteUInt32LittleEndian(header[4..], (uint)body.Count);
            ms.Write(header);
            ms.Write(body.ToArray());
            body.Clear();
        }

        // xs_state_global: only the listening socket travels; this daemon has no event channel device.
        AddI32(body, listeners.Count > 0 ? listeners[0].Fd : -1);
        AddI32(body, -1);
        Record(TypeGlobal);

        foreach (var c in p.Connections)
        {
            bool ring = c.Kind == XsConnectionKind.DomainRing && !c.Closed;
            bool socket = c.Kind == XsConnectionKind.Socket && c.HandoverFd >= 0 && listeners.Count > 0;
            if (!ring && !socket)
                continue;
            var input = socket ? c.PendingInput ?? [] : [];
            var output = c.Output.Snapshot();
            if (reply is { } lu && lu.ConnectionId == c.Id)
            {
                var text = Encoding.ASCII.GetBytes(lu.Text + "\0");
                var frame = new byte[XsConstants.HeaderSize + text.Length];
                new XsHeader(XsMessageType.Control, lu.RequestId, lu.TransactionId, (uint)text.Length).Write(frame);
                text.CopyTo(frame, XsConstants.HeaderSize);
                output = [.. output, .. frame];
            }
            if (input.Length > ushort.MaxValue)
                throw new InvalidOperationException($"connection {c.Id}: unprocessed input too long for the Xen state");
            AddU32(body, (uint)c.Id);
            AddU16(body, ring ? ConnRing : ConnSocket);
            AddU16(body, 0);
            if (ring)
            {
                p.Domains.TryGetValue(c.DomainId, out var d);
                AddU16(body, (ushort)c.DomainId);
                AddU16(body, c.Target is { } t ? (ushort)t : DomidInvalid);
                AddU32(body, d?.EventChannel ?? 0);
            }
            else
            {
                AddI32(body, c.HandoverFd);
                AddU32(body, 0);
            }
            AddU16(body, (ushort)input.Length);
            AddU16(body, 0);
            AddU32(body, (uint)output.Length);
            body.AddRange(input);
            body.AddRange(output);
            Record(TypeConnection);

            foreach (var w in c.Watches)
            {
                string path = w.Relative ? XsPath.MakeRelative(w.Path, c.DomainId) : w.Path;
                AddU32(body, (uint)c.Id);
                AddU16(body, (ushort)(path.Length + 1));
                AddU16(body, (ushort)(w.Token.Length + 1));
                AddString(body, path);
                AddString(body, w.Token);
                Record(TypeWatch);
            }
            foreach (var id in c.Transactions.Keys)
            {
                AddU32(body, (uint)c.Id);
                AddU32(body, id);
                Record(TypeTransaction);
            }
        }

        foreach (var (name, perms) in p.SpecialPermissions)
        {
            AddNode(body, name, [], perms);
            Record(TypeNode);
        }
        // Parents before children (read_state_node links each node into its parent), children in order.
        var queue = new Queue<string>();
        queue.Enqueue("/");
        while (queue.TryDequeue(out var path))
        {
            var node = p.Store.Get(path, null) ?? throw new InvalidOperationException($"{path} is listed but missing");
            AddNode(body, path, node.Value, p.Store.PermsOf(node));
            Record(TypeNode);
            foreach (var child in node.Children)
                queue.Enqueue(path == "/" ? "/" + child : path + "/" + child);
        }
        Record(TypeEnd);
        return ms.ToArray();
    }

    private static void AddNode(List<byte> body, string path, byte[] value, XsPermission[] perms)
    {
        AddU32(body, 0);
        AddU32(body, 0);
        AddU16(body, (ushort)(path.Length + 1));
        AddU16(body, (ushort)value.Length);
        AddU16(body, 0);
        AddU16(body, (ushort)perms.Length);
        foreach (var perm in perms)
        {
            body.Add((byte)perm.Letter);
            body.Add((perm.Access & XsAccess.Ignore) != 0 ? PermIgnore : (byte)0);
            AddU16(body, (ushort)perm.DomainId);
        }
        AddString(body, path);
        body.AddRange(value);
    }

    /// <summary>
    /// Loads xenstored's state into a fresh processor. Socket connections and the listening socket are
    /// adopted by fd (each checked to be a Unix stream socket of the recorded kind); the listener is listed
    /// under the empty path (xenstored's record has none: it serves the daemon's own socket path). Dom0's
    /// ring (xenstored maps <c>/proc/xen/xsd_kva</c>) is not served by this daemon and is skipped with its watches.
    /// </summary>
    public static void Restore(XsProcessor p, ReadOnlySpan<byte> state, List<(string Path, int Fd)> listeners, List<XsConnection> sockets)
    {
        if (state.Length < PreambleSize || !IsXenState(state))
            throw new InvalidDataException("not a xenstored state record");
        if (BinaryPrimitives.ReadUInt32BigEndian(state[8..]) != Version)
            throw new InvalidDataException("unsupported xenstored state version");
        if (BinaryPrimitives.ReadUInt32LittleEndian(state[12..]) != 0)
            throw new InvalidDataException("xenstored state is not little endian");

        var conns = new Dictionary<uint, XsConnection?>();
        var nodes = new Dictionary<string, XsNode>(StringComparer.Ordinal);
        var ordered = new List<XsNode>();
        int at = PreambleSize;
        bool ended = false;
        while (!ended)
        {
            if (state.Length - at < 8)
                throw new InvalidDataException("truncated xenstored state record");
            uint type = BinaryPrimitives.ReadUInt32LittleEndian(state[at..]);
            uint length = BinaryPrimitives.ReadUInt32LittleEndian(state[(at + 4)..]);
            at += 8;
            if (length % 8 != 0 || length > (uint)(state.Length - at))
                throw new InvalidDataException($"bad length {length} of a xenstored state record");
            var r = state.Slice(at, (int)length);
            at += (int)length;
            switch (type)
            {
                case TypeEnd:
                    ended = true;
                    break;
                case TypeGlobal:
                    Need(r, 8);
                    int listenFd = BinaryPrimitives.ReadInt32LittleEndian(r);
                    // The event channel fd (r[4..]) belongs to the hypervisor interface this daemon does not use.
                    if (listenFd >= 0)
                        listeners.Add(("", XsSocketHandover.Validate(listenFd, listening: true)));
                    break;
                case TypeConnection:
                    ReadConnection(p, r, conns, sockets);
                    break;
                case TypeWatch:
                    ReadWatch(p, r, conns);
                    break;
                case TypeTransaction:
                    Need(r, 8);
                    if (Connection(conns, BinaryPrimitives.ReadUInt32LittleEndian(r)) is { } tc)
                    {
                        uint txid = BinaryPrimitives.ReadUInt32LittleEndian(r[4..]);
                        if (txid == 0 || !p.AdoptFailedTransaction(tc, txid))
                            throw new InvalidDataException($"bad transaction id {txid}");
                        tc.NextTransactionId = Math.Max(tc.NextTransactionId, txid + 1);
                    }
                    break;
                case TypeNode:
                    ReadNode(p, r, nodes, ordered);
                    break;
                default:
                    throw new InvalidDataException($"unknown xenstored state record type {type}");
            }
        }
        if (!nodes.ContainsKey("/"))
            throw new InvalidDataException("xenstored state has no root node");
        foreach (var n in ordered)
            n.Generation = 1;
        p.Store.Restore(ordered, 1);
    }

    private static void ReadConnection(XsProcessor p, ReadOnlySpan<byte> r, Dictionary<uint, XsConnection?> conns, List<XsConnection> sockets)
    {
        Need(r, ConnectionFixedSize);
        uint id = BinaryPrimitives.ReadUInt32LittleEndian(r);
        ushort kind = BinaryPrimitives.ReadUInt16LittleEndian(r[4..]);
        int inLength = BinaryPrimitives.ReadUInt16LittleEndian(r[16..]);
        int respLength = BinaryPrimitives.ReadUInt16LittleEndian(r[18..]);
        uint outLength = BinaryPrimitives.ReadUInt32LittleEndian(r[20..]);
        if ((ulong)inLength + outLength > (ulong)(r.Length - ConnectionFixedSize) || respLength > outLength)
            throw new InvalidDataException($"connection {id}: buffered data longer than its record");
        var input = r.Slice(ConnectionFixedSize, inLength);
        var output = r.Slice(ConnectionFixedSize + inLength, (int)outLength);
        // data_resp_len bytes finish a reply the client has partly read; whole messages follow.
        if (!XsFrameReader.IsWholeFrames(output[respLength..]))
            throw new InvalidDataException($"connection {id}: queued output is not whole messages");
        if (conns.ContainsKey(id))
            throw new InvalidDataException($"connection {id} recorded twice");
        XsConnection? c;
        if (kind == ConnRing)
        {
            uint domid = BinaryPrimitives.ReadUInt16LittleEndian(r[8..]);
            ushort target = BinaryPrimitives.ReadUInt16LittleEndian(r[10..]);
            uint port = BinaryPrimitives.ReadUInt32LittleEndian(r[12..]);
            if (domid >= XsConstants.DomidFirstReserved)
                throw new InvalidDataException($"connection {id}: bad domain id {domid}");
            if (domid == 0)
            {
                conns[id] = null;
                return;
            }
            var d = p.GetOrAddDomain(domid);
            d.EventChannel = port;
            d.Target = target == DomidInvalid ? null : target;
            c = p.AddConnection(XsConnectionKind.DomainRing, domid, null);
            c.Target = d.Target;
            d.Connection = c;
            // Input already taken from the ring but not handled is lost: a detached ring has no read buffer.
        }
        else if (kind == ConnSocket)
        {
            int fd = BinaryPrimitives.ReadInt32LittleEndian(r[8..]);
            var socket = XsSocketHandover.Adopt(XsSocketHandover.Validate(fd, listening: false));
            c = p.AddConnection(XsConnectionKind.Socket, 0, new NetworkStream(socket, ownsSocket: true));
            c.Socket = socket;
            c.PendingInput = inLength > 0 ? input.ToArray() : null;
            sockets.Add(c);
        }
        else
        {
            throw new InvalidDataException($"connection {id}: unknown type {kind}");
        }
        c.Output.AppendRaw(output);
        conns[id] = c;
    }

    private static void ReadWatch(XsProcessor p, ReadOnlySpan<byte> r, Dictionary<uint, XsConnection?> conns)
    {
        Need(r, 8);
        var c = Connection(conns, BinaryPrimitives.ReadUInt32LittleEndian(r));
        int pathLength = BinaryPrimitives.ReadUInt16LittleEndian(r[4..]);
        int tokenLength = BinaryPrimitives.ReadUInt16LittleEndian(r[6..]);
        Need(r, 8 + pathLength + tokenLength);
        var rawPath = CString(r.Slice(8, pathLength), "watch path");
        string token = Encoding.ASCII.GetString(CString(r.Slice(8 + pathLength, tokenLength), "watch token"));
        if (c is null)
            return;
        string path;
        bool relative = false;
        if (!rawPath.IsEmpty && rawPath[0] == (byte)'@')
        {
            if (rawPath.Length > XsConstants.RelPathMax)
                throw new InvalidDataException("special watch name too long");
            path = Encoding.ASCII.GetString(rawPath);
        }
        else if (XsPath.Canonicalize(rawPath, c.DomainId, allowSpecial: false, int.MaxValue, out path, out relative) != XsError.None)
        {
            throw new InvalidDataException("invalid watch path");
        }
        p.AddWatch(c, new XsWatch(path, token, relative));
    }

    private static void ReadNode(XsProcessor p, ReadOnlySpan<byte> r, Dictionary<string, XsNode> nodes, List<XsNode> ordered)
    {
        Need(r, NodeFixedSize);
        uint connId = BinaryPrimitives.ReadUInt32LittleEndian(r);
        uint txId = BinaryPrimitives.ReadUInt32LittleEndian(r[4..]);
        int pathLength = BinaryPrimitives.ReadUInt16LittleEndian(r[8..]);
        int dataLength = BinaryPrimitives.ReadUInt16LittleEndian(r[10..]);
        int permCount = BinaryPrimitives.ReadUInt16LittleEndian(r[14..]);
        int permsEnd = NodeFixedSize + permCount * 4;
        Need(r, permsEnd + pathLength + dataLength);
        var rawPath = CString(r.Slice(permsEnd, pathLength), "node path");
        string path = Encoding.ASCII.GetString(rawPath);
        // A transaction's private nodes: its contents are not carried over, the transaction fails instead.
        if (connId != 0 || txId != 0)
            return;
        if (permCount == 0)
            throw new InvalidDataException($"{path} has no permissions");
        var perms = new XsPermission[permCount];
        for (int i = 0; i < permCount; i++)
        {
            var e = r.Slice(NodeFixedSize + i * 4, 4);
            var access = e[0] switch
            {
                (byte)'n' => XsAccess.None,
                (byte)'r' => XsAccess.Read,
                (byte)'w' => XsAccess.Write,
                (byte)'b' => XsAccess.Both,
                _ => throw new InvalidDataException($"{path}: bad permission {e[0]}"),
            };
            if ((e[1] & PermIgnore) != 0)
                access |= XsAccess.Ignore;
            perms[i] = new XsPermission(BinaryPrimitives.ReadUInt16LittleEndian(e[2..]), access);
        }
        if (path.StartsWith('@'))
        {
            if (!p.SpecialPermissions.ContainsKey(path))
                throw new InvalidDataException($"{path} is not a special node");
            p.SpecialPermissions[path] = perms;
            return;
        }
        if (path != "/" && (XsPath.Canonicalize(rawPath, 0, allowSpecial: false, int.MaxValue, out string canonical, out bool relative) != XsError.None
                            || relative || canonical != path))
            throw new InvalidDataException($"invalid node path {path}");
        if (nodes.ContainsKey(path))
            throw new InvalidDataException($"{path} recorded twice");
        var node = new XsNode(path, r.Slice(permsEnd + pathLength, dataLength).ToArray(), perms);
        if (path != "/")
        {
            int slash = path.LastIndexOf('/');
            string parent = slash == 0 ? "/" : path[..slash];
            if (!nodes.TryGetValue(parent, out var parentNode))
                throw new InvalidDataException($"{path} comes before its parent");
            parentNode.AddChild(path[(slash + 1)..]);
        }
        nodes.Add(path, node);
        ordered.Add(node);
    }

    private static XsConnection? Connection(Dictionary<uint, XsConnection?> conns, uint id) =>
        conns.TryGetValue(id, out var c) ? c : throw new InvalidDataException($"record names unknown connection {id}");

    private static ReadOnlySpan<byte> CString(ReadOnlySpan<byte> field, string what)
    {
        if (field.IsEmpty || field[^1] != 0 || field[..^1].Contains((byte)0))
            throw new InvalidDataException($"{what} is not one NUL-terminated string");
        return field[..^1];
    }

    private static void Need(ReadOnlySpan<byte> r, int length)
    {
        if (r.Length < length)
            throw new InvalidDataException("xenstored state record too short");
    }

    private static void AddU16(List<byte> b, ushort v)
    {
        b.Add((byte)v);
        b.Add((byte)(v >> 8));
    }

    private static void AddU32(List<byte> b, uint v)
    {
        AddU16(b, (ushort)v);
        AddU16(b, (ushort)(v >> 16));
    }

    private static void AddI32(List<byte> b, int v) => AddU32(b, (uint)v);

    private static void AddString(List<byte> b, string s)
    {
        foreach (char ch in s)
            b.Add((byte)ch);
        b.Add(0);
    }
}
