using VmmKit.Hypercall;

namespace VmmKit.EventChannel.Tests;

/// <summary>The libxenevtchn-style client over in-process host domains.</summary>
public class ClientTests
{
    private static async Task<uint> Next(IEventChannelClient c) => await c.PendingAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));

    private static async Task AssertNothingPending(IEventChannelClient c)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await c.PendingAsync(cts.Token));
    }

    [Fact]
    public async Task A_port_fires_once_until_unmasked_and_keeps_a_pending_event()
    {
        var hv = new EventChannelHypervisor();
        using var dom0 = new EventChannelHostDomain(hv, 0, isControlDomain: true);
        using var dom1 = new EventChannelHostDomain(hv, 1);
        using var back = dom0.Open();
        using var front = dom1.Open();
        uint bp = back.BindUnboundPort(1);
        uint fp = front.BindInterdomain(0, bp);
        Assert.Equal(fp, await Next(front)); // Xen signals a freshly bound interdomain port
        front.Unmask(fp);

        front.Notify(fp);
        Assert.Equal(bp, await Next(back));
        front.Notify(fp);                    // masked: stays pending
        await AssertNothingPending(back);
        back.Unmask(bp);                     // the pending event fires again
        Assert.Equal(bp, await Next(back));
        back.Unmask(bp);
        await AssertNothingPending(back);

        back.Notify(bp);
        Assert.Equal(fp, await Next(front));
    }

    [Fact]
    public async Task An_event_is_in_hand_from_delivery_until_its_port_is_unmasked()
    {
        // A scheduler that skips guest time while a backend has work uses this count: an event handed to a handle but
        // not yet served (its port not unmasked) is work the backend has not answered, even before its task runs.
        var hv = new EventChannelHypervisor();
        using var dom0 = new EventChannelHostDomain(hv, 0, isControlDomain: true);
        using var dom1 = new EventChannelHostDomain(hv, 1);
        using var back = dom0.Open();
        using var front = dom1.Open();
        uint bp = back.BindUnboundPort(1);
        uint fp = front.BindInterdomain(0, bp);
        Assert.Equal(fp, await Next(front));
        front.Unmask(fp);
        Assert.Equal(0, dom0.EventsInHand);

        front.Notify(fp);
        Assert.Equal(1, dom0.EventsInHand);  // delivered on the sender's thread, nobody has read it yet
        front.Notify(fp);                    // masked: stays pending, still one event in hand
        Assert.Equal(1, dom0.EventsInHand);
        Assert.Equal(bp, await Next(back));
        Assert.Equal(1, dom0.EventsInHand);  // read, not yet served
        back.Unmask(bp);                     // served; the pending one fires again at once
        Assert.Equal(1, dom0.EventsInHand);
        Assert.Equal(bp, await Next(back));
        back.Unmask(bp);
        Assert.Equal(0, dom0.EventsInHand);
        back.Unmask(bp);                     // a second unmask does not count below zero
        Assert.Equal(0, dom0.EventsInHand);

        front.Notify(fp);
        Assert.Equal(1, dom0.EventsInHand);
        back.Unbind(bp);                     // closed before it was served: nothing in hand any more
        Assert.Equal(0, dom0.EventsInHand);
    }

    [Fact]
    public async Task Errors_unbind_virq_and_close()
    {
        var hv = new EventChannelHypervisor();
        using var dom0 = new EventChannelHostDomain(hv, 0, isControlDomain: true);
        using var other = dom0.Open();
        var client = dom0.Open();
        Assert.Equal(XenErrno.ENOTCONN, Assert.Throws<EventChannelException>(() => client.Notify(5)).Errno);
        Assert.Equal(XenErrno.ENOTCONN, Assert.Throws<EventChannelException>(() => client.Unbind(5)).Errno);
        Assert.Equal(XenErrno.ESRCH, Assert.Throws<EventChannelException>(() => client.BindInterdomain(9, 1)).Errno);
        Assert.Equal(XenErrno.EINVAL, Assert.Throws<EventChannelException>(() => client.BindVirq((Virq)30)).Errno);

        uint port = client.BindVirq(Virq.DomExc);
        Assert.Equal(XenErrno.ENOTCONN, Assert.Throws<EventChannelException>(() => other.Unmask(port)).Errno);
        hv.SetGlobalVirqHandler(Virq.DomExc, dom0.Domain);
        hv.SendGlobalVirq(Virq.DomExc);
        await using var stream = client.ReadPendingAsync().GetAsyncEnumerator();
        Assert.True(await stream.MoveNextAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(port, stream.Current);

        uint unbound = client.BindUnboundPort(3);
        client.Unbind(unbound);
        Assert.Equal(ChannelState.Free, hv.GetState(dom0.Domain, unbound));
        client.Dispose(); // xenevtchn_close unbinds the rest
        Assert.Equal(ChannelState.Free, hv.GetState(dom0.Domain, port));
        Assert.Throws<ObjectDisposedException>(() => client.BindUnboundPort(1));
    }
}
