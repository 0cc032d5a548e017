using System.Diagnostics.Metrics;
using VmmKit.TestSupport;

namespace VmmKit.EventChannel.Tests;

/// <summary>The meter is process-wide: these tests run alone so that no other test's hypervisor adds measurements.</summary>
[CollectionDefinition(nameof(EventChannelMeterCollection), DisableParallelization = true)]
public sealed class EventChannelMeterCollection;

/// <summary>The <c>VmmKit.EventChannel</c> meter's instruments, as the package README lists them, seen by a <see cref="MeterListener"/>.</summary>
[Collection(nameof(EventChannelMeterCollection))]
public sealed class MetricsTests
{
    [Fact]
    public void The_instrument_names_are_the_documented_ones()
    {
        Assert.Equal("VmmKit.EventChannel", EventChannelMetrics.MeterName);
        Assert.Equal("vmmkit.eventchannel.sends", EventChannelMetrics.Sends);
        Assert.Equal("vmmkit.eventchannel.notifications", EventChannelMetrics.Notifications);
        MeterCapture.AssertDocumented("EventChannel", EventChannelMetrics.MeterName, EventChannelMetrics.Sends, EventChannelMetrics.Notifications);
    }

    [Fact]
    public void Sends_are_counted_by_kind_and_upcalls_once_per_pending_edge()
    {
        using var counts = new MeterCapture(EventChannelMetrics.MeterName);

        var hv = new EventChannelHypervisor();
        using var a = new TestGuest(hv, 1, vcpus: 1);
        using var b = new TestGuest(hv, 2, vcpus: 1);
        uint remote = b.AllocUnbound(1);
        uint local = a.BindInterdomain(2, remote);
        uint unbound = a.AllocUnbound(2);
        Assert.Equal(0, a.Send(local));
        Assert.Equal(0, a.Send(local)); // already pending: no second upcall
        Assert.Equal(0, a.Send(unbound));
        var virq = new EvtchnBindVirq { Virq = (uint)Virq.Timer, Vcpu = 0 };
        Assert.Equal(0, hv.BindVirq(a.Domain, ref virq));
        hv.SendVirq(a.Domain, 0, Virq.Timer);
        hv.SendVirq(b.Domain, 0, Virq.Timer); // b has no VIRQ_TIMER binding: nothing sent
        Assert.Equal(-22, a.Send(999)); // -EINVAL: not a send

        lock (counts)
        {
            Assert.Equal(2, counts["vmmkit.eventchannel.sends kind=interdomain"]);
            Assert.Equal(1, counts["vmmkit.eventchannel.sends kind=unbound"]);
            Assert.Equal(1, counts["vmmkit.eventchannel.sends kind=virq"]);
            Assert.Equal(2, counts["vmmkit.eventchannel.notifications"]); // b once, a once
            Assert.Equal(4, counts.Count);
        }
    }
}
