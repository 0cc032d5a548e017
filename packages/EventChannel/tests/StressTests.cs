using VmmKit.Hypercall;

namespace VmmKit.EventChannel.Tests;

/// <summary>
/// Several threads sending, the receiving guest's two vCPUs draining on their own threads while a
/// third thread masks/unmasks and moves ports between vCPUs and priorities, and a churn thread
/// closing and re-binding other channels: no notification is lost (the last send on each channel
/// is always followed by a delivery that sees it) and none is spurious (never more deliveries
/// than sends, plus the one bind_interdomain makes).
/// </summary>
public class StressTests
{
    private sealed class SignalingUpcall : IEventChannelUpcall
    {
        public readonly SemaphoreSlim[] Signals = [new(0), new(0)];
        public void RaiseUpcall(EventChannelDomain domain, int vcpu) => Signals[vcpu].Release();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Send_unmask_and_close_from_many_threads_lose_nothing(bool fifo)
    {
        const int Stable = 12, Churn = 4, Senders = 3, SendsPerSender = 20_000;
        var hv = new EventChannelHypervisor();
        var threads = new Threads();
        var signal = new SignalingUpcall();
        using var sender = new TestGuest(hv, 1, vcpus: 1);
        using var receiver = new TestGuest(hv, 2, vcpus: 2, upcall: signal);
        if (fifo)
            receiver.InitFifo();

        var local = new uint[Stable];
        var remote = new uint[Stable];
        for (int i = 0; i < Stable; i++)
        {
            remote[i] = receiver.AllocUnbound(1);
            local[i] = sender.BindInterdomain(2, remote[i]);
            Assert.Equal(0, hv.BindVcpu(receiver.Domain, new EvtchnBindVcpu { Port = remote[i], Vcpu = (uint)(i % 2) }));
        }
        var churnLocal = new uint[Churn];
        var churnRemote = new uint[Churn];

        int portSpace = receiver.Domain.MaxPorts;
        var started = new long[portSpace];     // sends begun, per receiver port
        var delivered = new long[portSpace];   // deliveries seen by the receiver
        var lastSeen = new long[portSpace];    // 'started' read right after the last delivery
        var stableRemote = new bool[portSpace];
        foreach (uint p in remote)
            stableRemote[p] = true;
        int lost = 0;
        using var stop = new CancellationTokenSource();

        void Receive(int vcpu)
        {
            var seen = new List<uint>();
            while (true)
            {
                bool signaled = signal.Signals[vcpu].Wait(20);
                seen.Clear();
                if (!receiver.Drain(vcpu, seen))
                    Interlocked.Increment(ref lost); // an event without an upcall
                foreach (uint p in seen)
                {
                    Interlocked.Increment(ref delivered[p]);
                    Volatile.Write(ref lastSeen[p], Volatile.Read(ref started[p]));
                }
                if (stop.IsCancellationRequested && !signaled)
                    return;
            }
        }

        var receivers = new[] { threads.Start(() => Receive(0)), threads.Start(() => Receive(1)) };
        var mover = threads.Start(() =>
        {
            var rng = new Random(7);
            while (!stop.IsCancellationRequested)
            {
                int i = rng.Next(Stable);
                uint p = remote[i];
                switch (rng.Next(4))
                {
                    case 0:
                        receiver.Mask(p);
                        Thread.SpinWait(rng.Next(50));
                        receiver.Unmask(p);
                        break;
                    case 1:
                        hv.BindVcpu(receiver.Domain, new EvtchnBindVcpu { Port = p, Vcpu = (uint)rng.Next(2) });
                        break;
                    case 2 when fifo:
                        hv.SetPriority(receiver.Domain, new EvtchnSetPriority { Port = p, Priority = (uint)rng.Next(16) });
                        break;
                    default:
                        Thread.Yield();
                        break;
                }
            }
        });
        var churn = threads.Start(() =>
        {
            var rng = new Random(11);
            while (!stop.IsCancellationRequested)
            {
                int i = rng.Next(Churn);
                if (churnLocal[i] != 0)
                {
                    hv.Close(sender.Domain, churnLocal[i]);
                    hv.Close(receiver.Domain, churnRemote[i]);
                }
                uint r = receiver.AllocUnbound(1);
                Volatile.Write(ref churnRemote[i], r);
                Volatile.Write(ref churnLocal[i], sender.BindInterdomain(2, r));
            }
        });

        var senders = Enumerable.Range(0, Senders).Select(s => threads.Start(() =>
        {
            var rng = new Random(100 + s);
            for (int n = 0; n < SendsPerSender; n++)
            {
                if (rng.Next(8) == 0)
                {
                    uint cl = Volatile.Read(ref churnLocal[rng.Next(Churn)]);
                    if (cl != 0)
                    {
                        long rc = sender.Send(cl);
                        Assert.True(rc == 0 || rc == XenErrno.EINVAL.Negated(), $"churn send {rc}");
                    }
                    continue;
                }
                int i = rng.Next(Stable);
                Interlocked.Increment(ref started[remote[i]]);
                Assert.Equal(0, sender.Send(local[i]));
            }
        })).ToArray();

        Assert.True(Threads.JoinAll(senders, TimeSpan.FromMinutes(2)), "senders stuck");
        stop.Cancel();
        Assert.True(Threads.JoinAll([mover, churn], TimeSpan.FromSeconds(30)), "mover/churn stuck");
        // Leave every stable port unmasked so the final drains see everything.
        foreach (uint p in remote)
            receiver.Unmask(p);
        signal.Signals[0].Release();
        signal.Signals[1].Release();
        Assert.True(Threads.JoinAll(receivers, TimeSpan.FromSeconds(30)), "receivers stuck");
        var rest = new List<uint>();
        Assert.True(receiver.Drain(0, rest) & receiver.Drain(1, rest));
        foreach (uint p in rest)
        {
            delivered[p]++;
            lastSeen[p] = started[p];
        }

        Assert.Empty(threads.Errors);
        Assert.Equal(0, lost);
        long total = 0;
        foreach (uint p in remote)
        {
            total += started[p];
            Assert.True(started[p] == 0 || lastSeen[p] == started[p], $"port {p}: last delivery saw {lastSeen[p]} of {started[p]} sends (lost)");
            Assert.True(delivered[p] <= started[p] + 1, $"port {p}: {delivered[p]} deliveries for {started[p]} sends (spurious)");
            Assert.True(delivered[p] >= 1);
            Assert.False(hv.IsPending(receiver.Domain, p));
        }
        Assert.True(total > Senders * SendsPerSender / 2);
    }
}
