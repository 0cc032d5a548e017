using System.Buffers.Binary;
using System.Text;
using VmmKit.XenStore.Client;
using VmmKit.XenStore.Daemon;
using VmmKit.XenStore.Store;
using VmmKit.XenStore.Transports;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Tests;

/// <summary>
/// Behaviour checked against Xen 4.17's xenstored source where the differential tests cannot show it (the
/// fake-Xen shim has no way to express it, or xenstored 4.17 itself misbehaves on the path).
/// </summary>
public class Xen417SourceTests
{
    private static byte[] S(params string[] parts) => Encoding.ASCII.GetBytes(string.Concat(parts.Select(p => p + "\0")));

    /// <summary>
    /// Xen 4.17's xenstored_domain.c, do_introduce: every INTRODUCE of a known domain calls domain_conn_reset
    /// (watches, transactions, queued output and a partly read request dropped, all four ring indexes zeroed)
    /// and, if the guest had set <c>connection = XENSTORE_RECONNECT</c>, answers CONNECTED and notifies it.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_repeated_introduce_resets_the_domains_ring(bool guestAskedToReconnect)
    {
        var connector = new RingTests.Connector();
        await using var daemon = new XenStoreDaemon(new XenStoreDaemonOptions { DomainConnector = connector });
        await using var dom0 = new XenStoreClient(daemon.Connect());
        await RingTests.IntroduceDomain5Async(dom0);
        var (page, toGuest, binding) = connector.Domains[5];
        var old = connector.GuestStream(5);

        // A watch, an open transaction, ten READs whose replies overflow the response ring (never taken), half a header.
        var requests = new List<byte>();
        requests.AddRange(RawConnection.Frame(XsMessageType.Watch, 1, 0, S("x", "tok")));
        requests.AddRange(RawConnection.Frame(XsMessageType.TransactionStart, 2, 0, S("")));
        for (uint i = 0; i < 10; i++)
            requests.AddRange(RawConnection.Frame(XsMessageType.Read, 100 + i, 0, S("x")));
        requests.AddRange(RawConnection.Frame(XsMessageType.Read, 777, 0, S("x")).AsSpan(0, 8).ToArray());
        await RingTests.SendUntilResponseRingFullAsync(page, old, binding, [.. requests]);
        uint Field(int offset) => XenStoreRingStream.ReadIndex(page.Span, offset);
        if (guestAskedToReconnect)
            BinaryPrimitives.WriteUInt32LittleEndian(page.Span[XenStoreDomainInterface.Connection..], XsConstants.Reconnect);
        int kicks = Volatile.Read(ref toGuest.Count);

        await dom0.IntroduceAsync(5, 1, 1);

        // What the guest sees once the INTRODUCE is acknowledged.
        Assert.Equal(0u, Field(XenStoreDomainInterface.ReqCons));
        Assert.Equal(0u, Field(XenStoreDomainInterface.ReqProd));
        Assert.Equal(0u, Field(XenStoreDomainInterface.RspCons));
        Assert.Equal(0u, Field(XenStoreDomainInterface.RspProd));
        Assert.Equal(XsConstants.Connected, Field(XenStoreDomainInterface.Connection));
        if (guestAskedToReconnect)
            Assert.True(Volatile.Read(ref toGuest.Count) > kicks);
        lock (daemon.Gate)
        {
            var conn = daemon.Processor.Connections.Single(c => c.DomainId == 5);
            Assert.Empty(conn.Watches);
            Assert.False(conn.Output.HasPending);
        }

        // The reset ring carries only the replies to new requests; the transaction is gone.
        using var fresh = new RawConnection(connector.GuestStream(5));
        await RingTests.AssertFirstReplyIsFreshAsync(fresh);
        var end = await fresh.RoundTripAsync(XsMessageType.TransactionEnd, 4243, 1, S("T"));
        Assert.Equal(XsMessageType.Error, end.Header.Type);
        Assert.Equal("ENOENT\0", Encoding.ASCII.GetString(end.Payload));
        await dom0.WriteAsync("/local/domain/5/x", "changed");
        var read = await fresh.RoundTripAsync(XsMessageType.Read, 4244, 0, S("x"));
        Assert.Equal(XsMessageType.Read, read.Header.Type);
        Assert.Equal("changed", Encoding.ASCII.GetString(read.Payload));
    }

    /// <summary>
    /// Xen 4.17's xenstored_domain.c, domain_can_read: a domain with <c>quota_req_outstanding</c> requests
    /// outstanding is not read from. A domain's own <c>outstanding</c> quota (SET_QUOTA) is the one that counts.
    /// </summary>
    [Fact]
    public async Task A_domains_own_outstanding_quota_limits_its_requests()
    {
        var connector = new RingTests.Connector();
        await using var daemon = new XenStoreDaemon(new XenStoreDaemonOptions { DomainConnector = connector });
        await using var dom0 = new XenStoreClient(daemon.Connect());
        await RingTests.IntroduceDomain5Async(dom0);
        await dom0.SetQuotaAsync("outstanding", 2, 5);
        var (page, _, binding) = connector.Domains[5];
        var guest = connector.GuestStream(5);

        // Five READs whose replies (1080 bytes) overflow the response ring, which the guest does not read, then WRITEs.
        var requests = new List<byte>();
        for (uint i = 0; i < 5; i++)
            requests.AddRange(RawConnection.Frame(XsMessageType.Read, 100 + i, 0, S("x")));
        for (uint i = 0; i < 10; i++)
            requests.AddRange(RawConnection.Frame(XsMessageType.Write, 200 + i, 0, Encoding.ASCII.GetBytes($"k{i}\0v")));
        Assert.Equal(requests.Count, guest.TryWrite(requests.ToArray()));
        binding.Signal();
        uint Field(int offset) => XenStoreRingStream.ReadIndex(page.Span, offset);
        for (int i = 0; i < 1000 && Field(XenStoreDomainInterface.RspProd) - Field(XenStoreDomainInterface.RspCons) != XsConstants.RingSize; i++)
            await Task.Delay(10);
        Assert.Equal((uint)XsConstants.RingSize, Field(XenStoreDomainInterface.RspProd) - Field(XenStoreDomainInterface.RspCons));

        // Two at a time: the fifth READ's reply filled the ring in the pass that also handled the first WRITE.
        Assert.Equal("v", await dom0.TryReadStringAsync("/local/domain/5/k0"));
        Assert.Null(await dom0.TryReadStringAsync("/local/domain/5/k1"));
    }

    /// <summary>
    /// Xen 4.17's xenstored_domain.c: introduce_domain fires @introduceDomain, and destroy_domain (RELEASE)
    /// @releaseDomain, before do_introduce/do_release send the acknowledgement, so a toolstack watching them
    /// reads the event first.
    /// </summary>
    [Fact]
    public async Task Introduce_and_release_events_come_before_the_reply()
    {
        var connector = new RingTests.Connector();
        await using var daemon = new XenStoreDaemon(new XenStoreDaemonOptions { DomainConnector = connector });
        using var dom0 = new RawConnection(daemon.Connect());
        foreach (var (name, req) in new[] { ("@introduceDomain", 1u), ("@releaseDomain", 2u) })
        {
            Assert.Equal(XsMessageType.Watch, (await dom0.RoundTripAsync(XsMessageType.Watch, req, 0, S(name, "t"))).Header.Type);
            Assert.Equal(XsMessageType.WatchEvent, (await dom0.ReceiveAsync()).Header.Type);
        }
        await dom0.SendAsync(RawConnection.Frame(XsMessageType.Introduce, 3, 0, S("5", "1", "1")));
        Assert.Equal(XsMessageType.WatchEvent, (await dom0.ReceiveAsync()).Header.Type);
        Assert.Equal(XsMessageType.Introduce, (await dom0.ReceiveAsync()).Header.Type);
        await dom0.SendAsync(RawConnection.Frame(XsMessageType.Release, 4, 0, S("5")));
        Assert.Equal(XsMessageType.WatchEvent, (await dom0.ReceiveAsync()).Header.Type);
        Assert.Equal(XsMessageType.Release, (await dom0.ReceiveAsync()).Header.Type);
    }
}
