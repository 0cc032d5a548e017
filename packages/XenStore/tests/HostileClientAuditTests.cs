using System.Text;
using VmmKit.XenStore.Daemon;
using VmmKit.XenStore.Transports;
using VmmKit.XenStore.Store;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Tests;

/// <summary>
/// An audit of the daemon against hostile clients that read xenstored's XSAs: quotas a domain must not escape
/// (by transactions or by several connections), host memory a client must not grow without bound. The cases
/// drive the processor directly, one message at a time, so every step is deterministic.
/// </summary>
public class HostileClientAuditTests
{
    /// <summary>A processor with a dom0 connection; guests get a home <c>/local/domain/N</c> they own.</summary>
    private sealed class Harness
    {
        private uint _nextRequest = 1;

        public Harness(XenStoreQuotas? quotas = null)
        {
            P = new XsProcessor(quotas ?? new XenStoreQuotas());
            Dom0 = P.AddConnection(XsConnectionKind.Stream, 0, null);
        }

        public XsProcessor P { get; }

        public XsConnection Dom0 { get; }

        /// <summary>Introduces <paramref name="domid"/> (its home owned by it) and opens a connection for it.</summary>
        public XsConnection Guest(uint domid)
        {
            if (!P.Domains.ContainsKey(domid))
            {
                P.GetOrAddDomain(domid);
                Ok(Dom0, XsMessageType.Mkdir, 0, S($"/local/domain/{domid}"));
                Ok(Dom0, XsMessageType.SetPerms, 0, S($"/local/domain/{domid}", $"n{domid}"));
            }
            return P.AddConnection(XsConnectionKind.Stream, domid, null);
        }

        /// <summary>Handles one request; returns the reply (type and payload), skipping watch events.</summary>
        public (XsMessageType Type, string Payload) Send(XsConnection c, XsMessageType type, uint tx, byte[] payload)
        {
            uint id = _nextRequest++;
            P.Process(c, new XsHeader(type, id, tx, (uint)payload.Length), payload);
            P.Kicks.Clear();
            (XsMessageType, string)? reply = null;
            foreach (var (h, body) in Take(c))
            {
                if (h.Type != XsMessageType.WatchEvent && h.RequestId == id)
                    reply = (h.Type, body);
            }
            return reply ?? throw new InvalidOperationException($"no reply to {type}");
        }

        /// <summary>Takes everything queued for <paramref name="c"/>: frames with their payloads as Latin-1.</summary>
        public static List<(XsHeader Header, string Payload)> Take(XsConnection c)
        {
            var frames = new List<(XsHeader, string)>();
            if (!c.Output.TryTake(out var buffer, out int length))
                return frames;
            var span = buffer.AsSpan(0, length);
            while (XsFrameReader.TryRead(span, out var h, out var payload, out int consumed) == XsFrameStatus.Frame)
            {
                frames.Add((h, Encoding.Latin1.GetString(payload)));
                span = span[consumed..];
            }
            c.Output.Return(buffer);
            return frames;
        }

        public string Ok(XsConnection c, XsMessageType type, uint tx, byte[] payload)
        {
            var (t, body) = Send(c, type, tx, payload);
            Assert.True(t == type, $"{type}: {t} {body.TrimEnd('\0')}");
            return body;
        }

        /// <summary>The errno name of the reply, or "OK" for a successful one.</summary>
        public string Status(XsConnection c, XsMessageType type, uint tx, byte[] payload)
        {
            var (t, body) = Send(c, type, tx, payload);
            return t == XsMessageType.Error ? body.TrimEnd('\0') : "OK";
        }

        public uint Start(XsConnection c) => uint.Parse(Ok(c, XsMessageType.TransactionStart, 0, [0]).TrimEnd('\0'));

        public string Write(XsConnection c, uint tx, string path, string value) =>
            Status(c, XsMessageType.Write, tx, [.. S(path), .. Encoding.ASCII.GetBytes(value)]);
    }

    private static byte[] S(params string[] parts) => RawConnection.Strings(parts);

    [Fact]
    public void Rewriting_one_node_inside_a_transaction_keeps_one_pending_event()
    {
        // transaction.c keeps one entry per node a transaction touched (access_node) and fires one event per
        // changed node at commit; a guest rewriting one node forever must not grow the daemon's memory.
        var h = new Harness();
        var guest = h.Guest(5);
        uint tx = h.Start(guest);
        for (int i = 0; i < 10_000; i++)
            Assert.Equal("OK", h.Write(guest, tx, "/local/domain/5/x", "v" + i));
        var open = guest.Transactions[tx];
        Assert.True(open.Events.Count <= open.Accessed.Count, $"{open.Events.Count} pending events for {open.Accessed.Count} nodes");

        // The commit still fires the change once, with the last value in place.
        h.Ok(h.Dom0, XsMessageType.Watch, 0, S("/local/domain/5/x", "w"));
        Harness.Take(h.Dom0);
        h.Ok(guest, XsMessageType.TransactionEnd, tx, S("T"));
        var events = Harness.Take(h.Dom0).Where(f => f.Header.Type == XsMessageType.WatchEvent).ToList();
        Assert.Single(events);
        Assert.Equal("v9999", h.Ok(guest, XsMessageType.Read, 0, S("/local/domain/5/x")));
    }

    [Fact]
    public void A_transaction_cannot_commit_more_than_the_memory_quota()
    {
        // XSA-326: a domain's memory quota holds for what it writes in a transaction too (xenstored accounts a
        // transaction's copies of nodes as they are written).
        var quotas = new XenStoreQuotas { Memory = 100_000 };
        var h = new Harness(quotas);
        var guest = h.Guest(5);
        string value = new('v', 1000);
        uint tx = h.Start(guest);
        int accepted = 0;
        for (int i = 0; i < 200; i++)
        {
            if (h.Write(guest, tx, $"/local/domain/5/n{i}", value) == "OK")
                accepted++;
        }
        h.Send(guest, XsMessageType.TransactionEnd, tx, S("T"));
        Assert.True(h.P.Store.MemoryOf(5) <= quotas.Memory, $"{h.P.Store.MemoryOf(5)} bytes after {accepted} writes");
        Assert.True(accepted < 100, $"{accepted} writes of 1000 bytes accepted");
    }

    [Fact]
    public void A_transaction_s_copies_are_charged_to_its_own_domain_not_to_the_nodes_owners()
    {
        // Xen 4.17's do_tdb_write accounts a transaction's copy (a key not starting with '/') to the connection's
        // domain (get_acc_domid), not to the node's owner: the toolstack's transactions over a guest's nodes, as
        // libxl makes them under /local/domain/N, must not use up that guest's quota.
        var quotas = new XenStoreQuotas { Memory = 100_000 };
        var h = new Harness(quotas);
        var guest = h.Guest(5);
        string kb = new('v', 1000);
        for (int i = 0; i < 80; i++)
            Assert.Equal("OK", h.Write(guest, 0, $"/local/domain/5/n{i}", kb));
        long before = h.P.Store.MemoryOf(5);

        uint tx = h.Start(h.Dom0);
        for (int i = 0; i < 80; i++)
            Assert.Equal("OK", h.Write(h.Dom0, tx, $"/local/domain/5/n{i}", kb + "x"));
        Assert.Equal(before, h.P.Store.MemoryOf(5));
        Assert.Equal("OK", h.Write(guest, 0, "/local/domain/5/more", new string('m', 2000)));
        h.Send(h.Dom0, XsMessageType.TransactionEnd, tx, S("F"));
    }

    [Fact]
    public void Open_transactions_together_hold_no_more_than_the_memory_quota()
    {
        // xenstored charges a transaction's node copies to the domain while the transaction is open, so a
        // guest's 11 transactions (quota + 1) share one memory quota, committed or not.
        var quotas = new XenStoreQuotas { Memory = 100_000 };
        var h = new Harness(quotas);
        var guest = h.Guest(5);
        string value = new('v', 1000);
        long held = 0;
        var txs = new List<uint>();
        for (int t = 0; t <= quotas.Transactions; t++)
        {
            uint tx = h.Start(guest);
            txs.Add(tx);
            for (int i = 0; i < 50; i++)
            {
                if (h.Write(guest, tx, $"/local/domain/5/t{t}n{i}", value) == "OK")
                    held += value.Length;
            }
        }
        Assert.True(held <= quotas.Memory, $"{held} bytes of values held by {txs.Count} open transactions");
        foreach (uint tx in txs)
            h.Send(guest, XsMessageType.TransactionEnd, tx, S("T"));
        Assert.True(h.P.Store.MemoryOf(5) <= quotas.Memory, $"{h.P.Store.MemoryOf(5)} bytes committed");

        // What the guest gave up is its own again: with every transaction ended and the nodes removed, a
        // write of the same size fits.
        for (int t = 0; t <= quotas.Transactions; t++)
        {
            for (int i = 0; i < 50; i++)
                h.Status(guest, XsMessageType.Rm, 0, S($"/local/domain/5/t{t}n{i}"));
        }
        Assert.Equal("OK", h.Write(guest, 0, "/local/domain/5/after", value));
    }

    [Fact]
    public void The_watch_quota_is_per_domain_across_its_connections()
    {
        // watch.c do_watch: "domain_watch(conn) > quota" counts the domain's watches (domain->nbwatch), not
        // the connection's, so a second connection of the same domain does not get a fresh quota.
        var quotas = new XenStoreQuotas { Watches = 4 };
        var h = new Harness(quotas);
        var first = h.Guest(5);
        var second = h.Guest(5);
        for (int i = 0; i <= quotas.Watches; i++)
            Assert.Equal("OK", h.Status(first, XsMessageType.Watch, 0, S("/local/domain/5", $"a{i}")));
        Assert.Equal("E2BIG", h.Status(first, XsMessageType.Watch, 0, S("/local/domain/5", "a-more")));
        Assert.Equal("E2BIG", h.Status(second, XsMessageType.Watch, 0, S("/local/domain/5", "b0")));

        // Watches given up (UNWATCH, a closed connection) are counted back.
        Assert.Equal("OK", h.Status(first, XsMessageType.Unwatch, 0, S("/local/domain/5", "a0")));
        Assert.Equal("OK", h.Status(second, XsMessageType.Watch, 0, S("/local/domain/5", "b0")));
        Assert.Equal("E2BIG", h.Status(second, XsMessageType.Watch, 0, S("/local/domain/5", "b1")));
        h.P.RemoveConnection(first);
        for (int i = 1; i <= quotas.Watches; i++)
            Assert.Equal("OK", h.Status(second, XsMessageType.Watch, 0, S("/local/domain/5", $"b{i}")));
    }

    [Fact]
    public void A_released_domain_keeps_no_right_to_the_special_watches()
    {
        // XSA-322 for the special names (domain.c remove_domid_from_perm on @releaseDomain/@introduceDomain):
        // when a domain goes, entries naming it go and an owner that was it becomes dom0, so a new domain that
        // gets the same id does not learn about other domains coming and going.
        var h = new Harness();
        var old = h.Guest(5);
        foreach (var name in new[] { "@releaseDomain", "@introduceDomain" })
            h.Ok(h.Dom0, XsMessageType.SetPerms, 0, S(name, "n0", "r5"));
        h.Ok(old, XsMessageType.Watch, 0, S("@releaseDomain", "old"));
        h.P.GetOrAddDomain(7);
        Harness.Take(old);
        h.Ok(h.Dom0, XsMessageType.Release, 0, S("7"));
        Assert.Contains(Harness.Take(old), f => f.Header.Type == XsMessageType.WatchEvent);   // the grant worked

        h.Ok(h.Dom0, XsMessageType.Release, 0, S("5"));
        var newcomer = h.Guest(5);
        h.Ok(newcomer, XsMessageType.Watch, 0, S("@releaseDomain", "new"));
        h.Ok(newcomer, XsMessageType.Watch, 0, S("@introduceDomain", "new"));
        Harness.Take(newcomer);
        h.Ok(h.Dom0, XsMessageType.Introduce, 0, S("8", "1", "1"));
        h.Ok(h.Dom0, XsMessageType.Release, 0, S("8"));
        Assert.DoesNotContain(Harness.Take(newcomer), f => f.Header.Type == XsMessageType.WatchEvent);
    }

    [Fact]
    public void Release_ends_every_connection_of_the_domain()
    {
        // domain.c do_release frees the domain's connection with its watches and transactions; a domain served
        // over more than one connection (its ring and an in-process stream) must not keep one acting for it,
        // with the rights of whichever domain gets the id next.
        var h = new Harness();
        var ring = h.Guest(5);
        var extra = h.Guest(5);
        h.Ok(extra, XsMessageType.Watch, 0, S("/local/domain/5", "w"));
        h.Start(extra);
        h.Ok(h.Dom0, XsMessageType.Release, 0, S("5"));
        Assert.True(ring.Closed && extra.Closed);
        Assert.DoesNotContain(h.P.Connections, c => c.DomainId == 5);
        Assert.Empty(extra.Watches);
        Assert.Empty(extra.Transactions);
        Assert.Equal(0, h.P.WatchesOf(5));
    }

    [Fact]
    public async Task A_ring_reconnect_drops_the_partial_request_and_the_replies_not_yet_taken()
    {
        // docs/misc/xenstore-ring.txt, ring reconnection: the server drops any partially read or written packet,
        // empties both queues, discards in-flight requests, then sets the state to connected. A guest (a kexec'd
        // or crash kernel) asking for a fresh ring with replies still queued and half a request sent must get a
        // working ring that starts on a packet boundary.
        var connector = new RingTests.Connector();
        await using var daemon = new XenStoreDaemon(new XenStoreDaemonOptions { DomainConnector = connector });
        await using var dom0 = new VmmKit.XenStore.Client.XenStoreClient(daemon.Connect());
        await RingTests.IntroduceDomain5Async(dom0);
        var (page, _, binding) = connector.Domains[5];
        var old = connector.GuestStream(5);

        // Ten READs whose replies (2160 bytes) overflow the 1024-byte response ring, never taken, then half a header.
        var requests = new List<byte>();
        for (uint i = 0; i < 10; i++)
            requests.AddRange(RawConnection.Frame(XsMessageType.Read, 100 + i, 0, S("x")));
        requests.AddRange(RawConnection.Frame(XsMessageType.Read, 777, 0, S("x")).AsSpan(0, 8).ToArray());
        await RingTests.SendUntilResponseRingFullAsync(page, old, binding, [.. requests]);
        uint Field(int offset) => XenStoreRingStream.ReadIndex(page.Span, offset);

        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(page.Span[XenStoreDomainInterface.Connection..], XsConstants.Reconnect);
        binding.Signal();
        for (int i = 0; i < 1000 && Field(XenStoreDomainInterface.Connection) != XsConstants.Connected; i++)
            await Task.Delay(10);
        Assert.Equal(XsConstants.Connected, Field(XenStoreDomainInterface.Connection));

        // The fresh ring carries only the reply to the new request.
        using var fresh = new RawConnection(connector.GuestStream(5));
        await RingTests.AssertFirstReplyIsFreshAsync(fresh);
        var second = await fresh.RoundTripAsync(XsMessageType.Read, 4243, 0, S("x"));
        Assert.Equal(4243u, second.Header.RequestId);
        Assert.Equal(200, second.Payload.Length);
    }
}
