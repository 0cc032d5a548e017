namespace VmmKit.EventChannel.Tests;

/// <summary>The hot path (send -> pending -> upcall) allocates nothing, for both ABIs; counted, not timed.</summary>
public class AllocationTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Send_unmask_and_virq_do_not_allocate(bool fifo)
    {
        var hv = new EventChannelHypervisor();
        using var a = new TestGuest(hv, 1, vcpus: 1);
        using var b = new TestGuest(hv, 2, vcpus: 2);
        if (fifo)
            b.InitFifo();
        uint remote = b.AllocUnbound(1);
        uint local = a.BindInterdomain(2, remote);
        var virq = new EvtchnBindVirq { Virq = (uint)Virq.Timer, Vcpu = 1 };
        Assert.Equal(0, hv.BindVirq(b.Domain, ref virq));
        var seen = new List<uint>(16);

        void Round()
        {
            a.Send(local);
            hv.SendVirq(b.Domain, 1, Virq.Timer);
            b.Mask(remote);
            a.Send(local);
            hv.Unmask(b.Domain, remote);
            hv.IsPending(b.Domain, remote);
            seen.Clear();
            b.Drain(0, seen);
            b.Drain(1, seen);
        }

        for (int i = 0; i < 100; i++)
            Round();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
            Round();
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.True(b.Upcalls.Total >= 2000);
    }
}
