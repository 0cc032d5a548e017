using System.Text;
using VmmKit.XenStore.Store;
using VmmKit.XenStore.Watches;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Daemon;

/// <summary>
/// The daemon's whole state as bytes, in the spirit of xenstored's live-update records
/// (xenstore_state.h): global data, nodes, domains, connections with watches and transactions.
/// Little-endian, length-prefixed, versioned; a malformed record is rejected with <see cref="InvalidDataException"/>.
/// </summary>
internal static class XsStateSerializer
{
    private const uint Magic = 0x33535856; // "VXS3"

    /// <summary>
    /// Writes the state. <paramref name="handover"/> lists listening sockets for a live update (socket
    /// connections with a handover fd are then written too); <paramref name="reply"/> is the answer the next
    /// daemon sends to the live-update requester (lu.c's lu_write_response).
    /// </summary>
    public static byte[] Save(XsProcessor p, IReadOnlyList<(string Path, int Fd)>? handover = null, XsLiveUpdateReply? reply = null)
    {
        using var ms = new MemoryStream();
        using (var w = new BinaryWriter(ms, Encoding.ASCII, leaveOpen: true))
        {
            w.Write(Magic);
            w.Write(p.Store.Generation);
            WriteQuotas(w, p.GlobalQuotas);

            var nodes = p.Store.AllNodes.ToList();
            w.Write(nodes.Count);
            foreach (var n in nodes)
            {
                w.Write(n.Path);
                w.Write(n.Value.Length);
                w.Write(n.Value);
                WritePerms(w, p.Store.PermsOf(n));
                w.Write(n.Children.Count);
                foreach (var child in n.Children)
                    w.Write(child);
                w.Write(n.Generation);
            }

            // The permissions of @introduceDomain and @releaseDomain (domain.c set_perms_special).
            w.Write(p.SpecialPermissions.Count);
            foreach (var (name, perms) in p.SpecialPermissions)
            {
                w.Write(name);
                WritePerms(w, perms);
            }

            w.Write(p.Domains.Count);
            foreach (var d in p.Domains.Values)
            {
                w.Write(d.DomainId);
                w.Write(d.Mfn);
                w.Write(d.EventChannel);
                w.Write(d.Target ?? uint.MaxValue);
                w.Write(d.Features);
                w.Write(d.Quotas is not null);
                if (d.Quotas is not null)
                    WriteQuotas(w, d.Quotas);
            }

            var conns = p.Connections.Where(c => c.Kind == XsConnectionKind.DomainRing && !c.Closed).ToList();
            w.Write(conns.Count);
            foreach (var c in conns)
            {
                w.Write(c.Id);
                w.Write(c.DomainId);
                WriteConnectionState(w, c);
            }

            // Live update only (docs/designs/xenstore-migration.md, CONNECTION_DATA with conn-type "socket"):
            // listening sockets and socket connections by file descriptor, with watches and unhandled input.
            handover ??= [];
            w.Write(handover.Count);
            foreach (var (path, fd) in handover)
            {
                w.Write(path);
                w.Write(fd);
            }
            var sockets = handover.Count == 0 ? [] : p.Connections.Where(c => c.Kind == XsConnectionKind.Socket && c.HandoverFd >= 0).ToList();
            w.Write(sockets.Count);
            foreach (var c in sockets)
            {
                w.Write(c.Id);
                w.Write(c.HandoverFd);
                w.Write(c.DomainId);
                WriteConnectionState(w, c);
                var input = c.PendingInput ?? [];
                w.Write(input.Length);
                w.Write(input);
            }

            w.Write(reply is not null);
            if (reply is { } lu)
            {
                w.Write(lu.ConnectionId);
                w.Write(lu.RequestId);
                w.Write(lu.TransactionId);
                w.Write(lu.Text);
            }
        }
        return ms.ToArray();
    }

    /// <summary>
    /// Loads a state: this daemon's own record, or xenstored's (<see cref="XsXenStateFormat"/>), told apart by
    /// the preamble.
    /// </summary>
    public static void Restore(XsProcessor p, ReadOnlySpan<byte> state, List<(string Path, int Fd)> listeners, List<XsConnection> sockets)
    {
        if (XsXenStateFormat.IsXenState(state))
        {
            XsXenStateFormat.Restore(p, state, listeners, sockets);
            return;
        }
        try
        {
            using var ms = new MemoryStream(state.ToArray(), writable: false);
            using var r = new BinaryReader(ms, Encoding.ASCII);
            if (r.ReadUInt32() != Magic)
                throw new InvalidDataException("not a VmmKit.XenStore state record");
            ulong generation = r.ReadUInt64();
            ReadQuotas(r, p.GlobalQuotas);

            int nodeCount = Count(r);
            var nodes = new List<XsNode>(nodeCount);
            for (int i = 0; i < nodeCount; i++)
            {
                string path = r.ReadString();
                var value = r.ReadBytes(Count(r));
                var perms = ReadPerms(r, path);
                var node = new XsNode(path, value, perms);
                int children = Count(r);
                for (int k = 0; k < children; k++)
                    node.AddChild(r.ReadString());
                node.Generation = r.ReadUInt64();
                nodes.Add(node);
            }
            p.Store.Restore(nodes, generation);

            int specialCount = Count(r);
            for (int i = 0; i < specialCount; i++)
            {
                string name = r.ReadString();
                var perms = ReadPerms(r, name);
                if (!p.SpecialPermissions.ContainsKey(name))
                    throw new InvalidDataException($"{name} is not a special node");
                p.SpecialPermissions[name] = perms;
            }

            int domainCount = Count(r);
            for (int i = 0; i < domainCount; i++)
            {
                var d = p.GetOrAddDomain(r.ReadUInt32());
                d.Mfn = r.ReadInt64();
                d.EventChannel = r.ReadUInt32();
                uint target = r.ReadUInt32();
                d.Target = target == uint.MaxValue ? null : target;
                d.Features = r.ReadUInt32();
                if (r.ReadBoolean())
                {
                    d.Quotas = new XenStoreQuotas();
                    ReadQuotas(r, d.Quotas);
                }
            }

            int connCount = Count(r);
            for (int i = 0; i < connCount; i++)
            {
                int id = r.ReadInt32();
                uint domid = r.ReadUInt32();
                var c = p.AddConnection(XsConnectionKind.DomainRing, domid, null, id);
                ReadConnectionState(p, r, c);
                if (p.Domains.TryGetValue(domid, out var dom))
                {
                    dom.Connection = c;
                    c.Target = dom.Target;
                }
            }

            int listenerCount = Count(r);
            for (int i = 0; i < listenerCount; i++)
                listeners.Add((r.ReadString(), XsSocketHandover.Validate(r.ReadInt32(), listening: true)));
            int socketCount = Count(r);
            for (int i = 0; i < socketCount; i++)
            {
                int id = r.ReadInt32();
                var socket = XsSocketHandover.Adopt(XsSocketHandover.Validate(r.ReadInt32(), listening: false));
                var c = p.AddConnection(XsConnectionKind.Socket, r.ReadUInt32(), new System.Net.Sockets.NetworkStream(socket, ownsSocket: true), id);
                c.Socket = socket;
                sockets.Add(c);
                ReadConnectionState(p, r, c);
                int inputLength = Count(r);
                if (inputLength > 64 * 1024)
                    throw new InvalidDataException("pending input longer than the receive buffer");
                c.PendingInput = inputLength > 0 ? r.ReadBytes(inputLength) : null;
            }

            if (r.ReadBoolean())
            {
                int connectionId = r.ReadInt32();
                uint requestId = r.ReadUInt32(), transactionId = r.ReadUInt32();
                var text = Encoding.ASCII.GetBytes(r.ReadString() + "\0");
                // The requester may have gone away while the state was written: then nobody waits for the answer.
                var requester = p.Connections.FirstOrDefault(c => c.Id == connectionId);
                requester?.Output.Append(new XsHeader(XsMessageType.Control, requestId, transactionId, (uint)text.Length), text);
            }
            if (ms.Position != ms.Length)
                throw new InvalidDataException("trailing bytes after the XenStore state record");
        }
        catch (EndOfStreamException e)
        {
            throw new InvalidDataException("truncated XenStore state record", e);
        }
    }

    /// <summary>A connection's transaction counter, watches and open transaction ids (ring and socket records alike).</summary>
    private static void WriteConnectionState(BinaryWriter w, XsConnection c)
    {
        w.Write(c.NextTransactionId);
        w.Write(c.Watches.Count);
        foreach (var watch in c.Watches)
        {
            w.Write(watch.Path);
            w.Write(watch.Token);
            w.Write(watch.Relative);
        }
        w.Write(c.Transactions.Count);
        foreach (var id in c.Transactions.Keys)
            w.Write(id);
        // Replies and events queued but not yet written: nothing a client was due is lost.
        var output = c.Output.Snapshot();
        w.Write(output.Length);
        w.Write(output);
    }

    private static void ReadConnectionState(XsProcessor p, BinaryReader r, XsConnection c)
    {
        c.NextTransactionId = r.ReadUInt32();
        int watches = Count(r);
        for (int k = 0; k < watches; k++)
            p.AddWatch(c, new XsWatch(r.ReadString(), r.ReadString(), r.ReadBoolean()));
        int txs = Count(r);
        for (int k = 0; k < txs; k++)
        {
            uint txid = r.ReadUInt32();
            // Transaction contents are not carried over: the client's commit will see EAGAIN and retry.
            p.AdoptFailedTransaction(c, txid);
        }
        int outputLength = Count(r);
        var output = r.ReadBytes(outputLength);
        if (output.Length != outputLength || !XsFrameReader.IsWholeFrames(output))
            throw new InvalidDataException("queued output of a connection is not whole messages");
        c.Output.AppendRaw(output);
    }

    private static void WritePerms(BinaryWriter w, XsPermission[] perms)
    {
        w.Write(perms.Length);
        foreach (var perm in perms)
        {
            w.Write(perm.DomainId);
            w.Write((byte)perm.Access);
        }
    }

    private static XsPermission[] ReadPerms(BinaryReader r, string owner)
    {
        var perms = new XsPermission[Count(r)];
        if (perms.Length == 0)
            throw new InvalidDataException($"{owner} has no permissions");
        for (int k = 0; k < perms.Length; k++)
            perms[k] = new XsPermission(r.ReadUInt32(), (XsAccess)r.ReadByte());
        return perms;
    }

    private static int Count(BinaryReader r)
    {
        int n = r.ReadInt32();
        if (n < 0 || n > 1 << 24)
            throw new InvalidDataException("bad count in XenStore state record");
        return n;
    }

    private static void WriteQuotas(BinaryWriter w, XenStoreQuotas q)
    {
        w.Write(XenStoreQuotas.Names.Count);
        foreach (var name in XenStoreQuotas.Names)
        {
            q.TryGet(name, out long v);
            w.Write(name);
            w.Write(v);
        }
        w.Write(q.EventBacklogBytes);
    }

    private static void ReadQuotas(BinaryReader r, XenStoreQuotas q)
    {
        int n = Count(r);
        for (int i = 0; i < n; i++)
            q.TrySet(r.ReadString(), r.ReadInt64());
        q.EventBacklogBytes = r.ReadInt32();
    }
}
