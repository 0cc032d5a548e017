using VmmKit.Hypercall;

namespace VmmKit.EventChannel.Tests;

/// <summary>
/// An audit of the hypervisor side against a hostile guest that read Xen's event-channel XSAs
/// (xen/common/event_channel.c, event_fifo.c): each test is a way such a guest could hurt the host or
/// another domain that the other test files do not cover, and the answer Xen gives.
/// </summary>
public class HostileGuestAuditTests
{
    private static long E(XenErrno e) => e.Negated();

    /// <summary>
    /// DestroyDomain may run while one of the domain's vCPUs is still inside a hypercall. An
    /// EVTCHNOP_init_control that gets the event lock after the teardown dropped the FIFO state must not
    /// map a frame: nothing would ever unmap it, so the guest would keep a frame reference (and the host
    /// page) alive after its death. Xen refuses new state in a dying domain (get_free_port: -EINVAL).
    /// </summary>
    [Fact]
    public void Init_control_racing_DestroyDomain_takes_no_frame_reference()
    {
        var hv = new EventChannelHypervisor();
        using var g = new TestGuest(hv, 1, vcpus: 2);
        g.InitFifo();
        hv.DestroyDomain(g.Domain);
        Assert.Equal(0, g.Frames.TotalReferences);

        // The in-flight hypercalls of a vCPU that has not noticed yet.
        var init = new EvtchnInitControl { ControlGfn = TestGuest.ControlGfn, Offset = 0, Vcpu = 1 };
        Assert.Equal(E(XenErrno.EINVAL), hv.InitControl(g.Domain, ref init));
        Assert.Equal(E(XenErrno.EOPNOTSUPP), hv.ExpandArray(g.Domain, new EvtchnExpandArray { ArrayGfn = TestGuest.FirstArrayGfn }));
        Assert.Equal(EventChannelAbiKind.TwoLevel, g.Domain.Abi);
        Assert.Equal(0, g.Frames.TotalReferences);
    }

    /// <summary>
    /// XSA-343's "evtchn_reset() shouldn't succeed with still-open ports": EVTCHNOP_reset closes the
    /// ports one by one without holding the event lock throughout, so another vCPU can bind a port the
    /// loop has passed. Here the ports below the one the reset waits on are still LINKED (busy) except
    /// port 4100, so the racing bind gets 4100: if the reset then switched to the 2-level ABI, that port
    /// would stay bound beyond the 4096 ports 2-level can address and every event sent to it would be
    /// lost. Xen answers -EAGAIN and keeps the FIFO ABI; a retry succeeds.
    /// </summary>
    [Fact]
    public void Reset_fails_with_eagain_when_a_racing_bind_left_a_port_open()
    {
        var hv = new EventChannelHypervisor();
        using var peer = new TestGuest(hv, 2, vcpus: 1); // created first: its event lock is taken first
        using var g = new TestGuest(hv, 1, vcpus: 1, maxPorts: 8192);
        Assert.True(peer.Domain.Ordinal < g.Domain.Ordinal);
        g.InitFifo(pages: 5);
        const uint Gap = 4100, Last = 4199;
        var ipi = new EvtchnBindIpi();
        for (uint p = 1; p <= Last; p++)
        {
            Assert.Equal(0, hv.BindIpi(g.Domain, ref ipi));
            Assert.Equal(p, ipi.Port);
            if (p != Gap)
                Assert.Equal(0, g.Send(p)); // queued and not consumed: LINKED, so busy once closed
        }
        uint link = g.BindInterdomain(2, peer.AllocUnbound(1));
        Assert.Equal(Last + 1, link);

        long rc = 1;
        var threads = new Threads();
        Thread reset;
        peer.Domain.EventLock.Enter();
        try
        {
            reset = threads.Start(() => Volatile.Write(ref rc, hv.Reset(g.Domain, DomainId.Self)));
            // The reset closes ports 1..4199, then waits for the peer's event lock to close 'link'.
            SpinUntil(() => hv.GetState(g.Domain, Last) == ChannelState.Free);
            Assert.Equal(0, hv.BindIpi(g.Domain, ref ipi)); // another vCPU of the guest
            Assert.Equal(Gap, ipi.Port);
        }
        finally
        {
            peer.Domain.EventLock.Exit();
        }
        Assert.True(Threads.JoinAll([reset], TimeSpan.FromSeconds(30)), "reset stuck");
        Assert.Empty(threads.Errors);
        Assert.Equal(E(XenErrno.EAGAIN), Volatile.Read(ref rc));
        Assert.Equal(EventChannelAbiKind.Fifo, g.Domain.Abi);
        Assert.Equal(ChannelState.Ipi, hv.GetState(g.Domain, Gap));
        Assert.Equal(0, g.Send(Gap));
        Assert.True(hv.IsPending(g.Domain, Gap)); // still deliverable

        Assert.Equal(0, hv.Reset(g.Domain, DomainId.Self)); // the guest retries
        Assert.Equal(EventChannelAbiKind.TwoLevel, g.Domain.Abi);
        Assert.Equal(ChannelState.Free, hv.GetState(g.Domain, Gap));
        Assert.Equal(0, g.Frames.TotalReferences);
    }

    /// <summary>
    /// A per-vCPU VIRQ raised for vCPU 0 just as the guest closed its port and bound the same VIRQ on vCPU 1, which took
    /// the same port number: Xen's send_guest_vcpu_virq reads the binding and sets the port pending under the vCPU's
    /// virq_lock, so vCPU 0's event goes nowhere. Here the sender read the old port before the close and then set it
    /// pending for vCPU 0, whose upcall came while vCPU 1, the port's vCPU, was never told.
    /// </summary>
    [Fact]
    public void A_vcpu_virq_raised_across_a_rebind_to_another_vcpu_reaches_no_wrong_vcpu()
    {
        var hv = new EventChannelHypervisor();
        using var g = new TestGuest(hv, 1, vcpus: 2);
        var bind = new EvtchnBindVirq { Virq = (uint)Virq.Timer, Vcpu = 0 };
        Assert.Equal(0, hv.BindVirq(g.Domain, ref bind));
        uint port = bind.Port;
        Channel chn = g.Domain.TryGetChannel(port)!;

        var threads = new Threads();
        Thread sender;
        chn.Lock.Enter();
        try
        {
            sender = threads.Start(() => hv.SendVirq(g.Domain, 0, Virq.Timer));
            // The sender has read vCPU 0's port and waits for the channel's lock.
            SpinUntil(() => (sender.ThreadState & ThreadState.WaitSleepJoin) != 0);
            Assert.Equal(0, hv.Close(g.Domain, port));
            bind = new EvtchnBindVirq { Virq = (uint)Virq.Timer, Vcpu = 1 };
            Assert.Equal(0, hv.BindVirq(g.Domain, ref bind));
            Assert.Equal(port, bind.Port);
        }
        finally
        {
            chn.Lock.Exit();
        }

        Assert.True(Threads.JoinAll([sender], TimeSpan.FromSeconds(30)), "send stuck");
        Assert.Empty(threads.Errors);
        Assert.Equal(0, g.Upcalls.Count(0));
        Assert.False(g.GuestPending(port));
    }

    /// <summary>
    /// evtchn_reset records a reset in progress (<c>d->next_evtchn</c>) and answers -EBUSY to another one started
    /// meanwhile, by another vCPU of the guest or its controller; here both ran their close loops at once.
    /// </summary>
    [Fact]
    public void A_second_reset_while_one_is_in_progress_is_ebusy()
    {
        var hv = new EventChannelHypervisor();
        using var peer = new TestGuest(hv, 2, vcpus: 1); // created first: its event lock is taken first
        using var g = new TestGuest(hv, 1, vcpus: 2);
        var ipi = new EvtchnBindIpi();
        Assert.Equal(0, hv.BindIpi(g.Domain, ref ipi));
        uint link = g.BindInterdomain(2, peer.AllocUnbound(1));

        long rc = 1;
        var threads = new Threads();
        Thread reset;
        peer.Domain.EventLock.Enter();
        try
        {
            reset = threads.Start(() => Volatile.Write(ref rc, hv.Reset(g.Domain, DomainId.Self)));
            // The first reset has closed the IPI and waits for the peer's event lock to close 'link'.
            SpinUntil(() => hv.GetState(g.Domain, ipi.Port) == ChannelState.Free);
            Assert.Equal(E(XenErrno.EBUSY), hv.Reset(g.Domain, DomainId.Self));
        }
        finally
        {
            peer.Domain.EventLock.Exit();
        }

        Assert.True(Threads.JoinAll([reset], TimeSpan.FromSeconds(30)), "reset stuck");
        Assert.Empty(threads.Errors);
        Assert.Equal(0, Volatile.Read(ref rc));
        Assert.Equal(ChannelState.Free, hv.GetState(g.Domain, link));
        Assert.Equal(0, hv.Reset(g.Domain, DomainId.Self)); // and the next one runs
    }

    /// <summary>
    /// Xen's port operations act only on a usable port (event.h: <c>evtchn_usable</c>, state above
    /// ECS_RESERVED): EVTCHNOP_unmask of port 0 or of a closed port does nothing, and poll sees it not
    /// pending. Here such an unmask cleared the mask bit, set the selector and raised an upcall for a port
    /// the guest had made pending in its own memory; done by a vCPU still inside the hypercall while
    /// DestroyDomain ran, it wrote the dead domain's shared_info and vcpu_info, which the hypervisor frees
    /// once DestroyDomain returned.
    /// </summary>
    [Fact]
    public unsafe void Unmask_of_a_port_not_bound_touches_no_guest_memory()
    {
        var hv = new EventChannelHypervisor();
        using var g = new TestGuest(hv, 1, vcpus: 1);
        var ipi = new EvtchnBindIpi();
        Assert.Equal(0, hv.BindIpi(g.Domain, ref ipi));
        var closed = new EvtchnBindIpi();
        Assert.Equal(0, hv.BindIpi(g.Domain, ref closed));
        Assert.Equal(0, hv.Close(g.Domain, closed.Port));
        byte* shared = g.Frames.Page(TestGuest.SharedInfoGfn);
        ulong* pending = (ulong*)(shared + 2048), mask = (ulong*)(shared + 2560);

        void AssertUnmaskIsANoOp(uint port)
        {
            *pending |= 1UL << (int)port; // the guest's own write
            *mask |= 1UL << (int)port;
            byte[] before = new Span<byte>(shared, 4096).ToArray();
            Assert.Equal(0, hv.Unmask(g.Domain, port));
            Assert.True(new Span<byte>(shared, 4096).SequenceEqual(before), $"port {port}: guest memory written");
            Assert.Equal(0, g.Upcalls.Total);
            Assert.False(hv.IsPending(g.Domain, port));
            Assert.True(hv.IsMasked(g.Domain, port));
        }

        AssertUnmaskIsANoOp(0);           // ECS_RESERVED
        AssertUnmaskIsANoOp(closed.Port); // ECS_FREE
        hv.DestroyDomain(g.Domain);       // a vCPU is still in EVTCHNOP_unmask of a port it had bound
        AssertUnmaskIsANoOp(ipi.Port);
    }

    // Waits for another thread's progress (a hang guard, not a timing assertion).
    private static void SpinUntil(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "the other thread made no progress");
            Thread.Yield();
        }
    }
}
