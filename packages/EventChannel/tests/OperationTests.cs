using VmmKit.Hypercall;

namespace VmmKit.EventChannel.Tests;

/// <summary>Each EVTCHNOP's success and errno paths, as xen/common/event_channel.c answers them.</summary>
public unsafe class OperationTests
{
    private static long E(XenErrno e) => e.Negated();

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Interdomain_channel_delivers_a_notification_with_an_upcall(bool fifo)
    {
        var hv = new EventChannelHypervisor();
        using var a = new TestGuest(hv, 1, vcpus: 2);
        using var b = new TestGuest(hv, 2, vcpus: 2);
        if (fifo)
        {
            a.InitFifo();
            b.InitFifo();
        }
        uint unbound = b.AllocUnbound(remote: 1);
        uint local = a.BindInterdomain(2, unbound);
        Assert.Equal(1u, unbound);
        Assert.Equal(1u, local);

        var seen = new List<uint>();
        Assert.True(a.Drain(0, seen));
        Assert.Equal([local], seen); // bind_interdomain always signals the new local port

        Assert.Equal(0, a.Send(local));
        Assert.Equal(1, b.Upcalls.Count(0));
        Assert.True(b.Hv.IsPending(b.Domain, unbound));
        seen.Clear();
        Assert.True(b.Drain(0, seen));
        Assert.Equal([unbound], seen);
        Assert.False(b.Hv.IsPending(b.Domain, unbound));

        // A second send while the first is pending and unhandled raises no second upcall.
        Assert.Equal(0, a.Send(local));
        Assert.Equal(0, a.Send(local));
        Assert.Equal(2, b.Upcalls.Count(0));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Masked_port_stays_pending_and_fires_on_unmask(bool fifo)
    {
        var hv = new EventChannelHypervisor();
        using var g = new TestGuest(hv, 1, vcpus: 1);
        if (fifo)
            g.InitFifo();
        var ipi = new EvtchnBindIpi { Vcpu = 0 };
        Assert.Equal(0, hv.BindIpi(g.Domain, ref ipi));
        g.Mask(ipi.Port);
        Assert.Equal(0, g.Send(ipi.Port));
        Assert.Equal(0, g.Upcalls.Total);
        Assert.True(hv.IsPending(g.Domain, ipi.Port));
        g.Unmask(ipi.Port);
        Assert.Equal(1, g.Upcalls.Total);
        var seen = new List<uint>();
        Assert.True(g.Drain(0, seen));
        Assert.Equal([ipi.Port], seen);
    }

    [Fact]
    public void Close_makes_the_peer_unbound_and_status_reports_every_state()
    {
        var hv = new EventChannelHypervisor();
        using var a = new TestGuest(hv, 1, vcpus: 2);
        using var b = new TestGuest(hv, 2, vcpus: 2);
        uint pb = b.AllocUnbound(1);
        var st = new EvtchnStatus { Dom = DomainId.Self, Port = pb };
        Assert.Equal(0, hv.Status(b.Domain, ref st));
        Assert.Equal((uint)EventChannelStatusCode.Unbound, st.Status);
        Assert.Equal(1, st.U.Dom);

        uint pa = a.BindInterdomain(2, pb);
        st = new EvtchnStatus { Dom = DomainId.Self, Port = pa };
        Assert.Equal(0, hv.Status(a.Domain, ref st));
        Assert.Equal((uint)EventChannelStatusCode.Interdomain, st.Status);
        Assert.Equal((2, pb), (st.U.Dom, st.U.Port));

        Assert.Equal(0, hv.Close(a.Domain, pa));
        st = new EvtchnStatus { Dom = DomainId.Self, Port = pb };
        Assert.Equal(0, hv.Status(b.Domain, ref st));
        Assert.Equal((uint)EventChannelStatusCode.Unbound, st.Status);
        Assert.Equal(1, st.U.Dom);
        Assert.Equal(0, b.Send(pb)); // unbound: dropped silently
        Assert.Equal(E(XenErrno.EINVAL), a.Send(pa)); // closed
        Assert.Equal(E(XenErrno.EINVAL), hv.Close(a.Domain, pa));
        Assert.Equal(E(XenErrno.EINVAL), hv.Close(a.Domain, 0)); // reserved
        Assert.Equal(E(XenErrno.EINVAL), hv.Close(a.Domain, 100_000));

        var virq = new EvtchnBindVirq { Virq = (uint)Virq.Timer, Vcpu = 1 };
        Assert.Equal(0, hv.BindVirq(a.Domain, ref virq));
        st = new EvtchnStatus { Dom = DomainId.Self, Port = virq.Port };
        Assert.Equal(0, hv.Status(a.Domain, ref st));
        Assert.Equal(((uint)EventChannelStatusCode.Virq, 1u, (uint)Virq.Timer), (st.Status, st.Vcpu, st.U.Virq));

        var ipi = new EvtchnBindIpi { Vcpu = 1 };
        Assert.Equal(0, hv.BindIpi(a.Domain, ref ipi));
        st = new EvtchnStatus { Dom = DomainId.Self, Port = ipi.Port };
        Assert.Equal(0, hv.Status(a.Domain, ref st));
        Assert.Equal(((uint)EventChannelStatusCode.Ipi, 1u), (st.Status, st.Vcpu));

        st = new EvtchnStatus { Dom = DomainId.Self, Port = 0 };
        Assert.Equal(0, hv.Status(a.Domain, ref st));
        Assert.Equal((uint)EventChannelStatusCode.Closed, st.Status);
    }

    [Fact]
    public void Binding_errors_follow_xen()
    {
        var hv = new EventChannelHypervisor();
        using var a = new TestGuest(hv, 1, vcpus: 2, maxPorts: 4);
        using var b = new TestGuest(hv, 2, vcpus: 1);

        var bi = new EvtchnBindInterdomain { RemoteDom = 9, RemotePort = 1 };
        Assert.Equal(E(XenErrno.ESRCH), hv.BindInterdomain(a.Domain, ref bi));
        uint forOther = b.AllocUnbound(remote: 7);
        bi = new EvtchnBindInterdomain { RemoteDom = 2, RemotePort = forOther };
        Assert.Equal(E(XenErrno.EINVAL), hv.BindInterdomain(a.Domain, ref bi)); // allocated for domain 7

        var v = new EvtchnBindVirq { Virq = VirqRules.Count, Vcpu = 0 };
        Assert.Equal(E(XenErrno.EINVAL), hv.BindVirq(a.Domain, ref v));
        v = new EvtchnBindVirq { Virq = (uint)Virq.Console, Vcpu = 1 };
        Assert.Equal(E(XenErrno.EINVAL), hv.BindVirq(a.Domain, ref v)); // global VIRQs live on vCPU 0
        v = new EvtchnBindVirq { Virq = (uint)Virq.Timer, Vcpu = 2 };
        Assert.Equal(E(XenErrno.ENOENT), hv.BindVirq(a.Domain, ref v));
        v = new EvtchnBindVirq { Virq = (uint)Virq.Timer, Vcpu = 1 };
        Assert.Equal(0, hv.BindVirq(a.Domain, ref v));
        Assert.Equal(E(XenErrno.EEXIST), hv.BindVirq(a.Domain, ref v));

        var ipi = new EvtchnBindIpi { Vcpu = 5 };
        Assert.Equal(E(XenErrno.ENOENT), hv.BindIpi(a.Domain, ref ipi));
        ipi.Vcpu = 0;
        Assert.Equal(0, hv.BindIpi(a.Domain, ref ipi));
        Assert.Equal(0, hv.BindIpi(a.Domain, ref ipi));
        Assert.Equal(3u, ipi.Port);
        Assert.Equal(E(XenErrno.ENOSPC), hv.BindIpi(a.Domain, ref ipi)); // MaxPorts = 4

        var pirq = new EvtchnBindPirq { Pirq = 1 };
        Assert.Equal(E(XenErrno.EINVAL), hv.BindPirq(a.Domain, ref pirq));

        Assert.Equal(E(XenErrno.EINVAL), hv.BindVcpu(a.Domain, new EvtchnBindVcpu { Port = 3, Vcpu = 1 })); // IPI
        Assert.Equal(E(XenErrno.EINVAL), hv.BindVcpu(a.Domain, new EvtchnBindVcpu { Port = 1, Vcpu = 0 })); // per-vCPU VIRQ
        Assert.Equal(E(XenErrno.ENOENT), hv.BindVcpu(a.Domain, new EvtchnBindVcpu { Port = 1, Vcpu = 2 }));
        Assert.Equal(0, hv.BindVcpu(b.Domain, new EvtchnBindVcpu { Port = forOther, Vcpu = 0 }));

        Assert.Equal(E(XenErrno.ENOSYS), hv.SetPriority(a.Domain, new EvtchnSetPriority { Port = 1, Priority = 3 })); // 2-level
        Assert.Equal(E(XenErrno.EOPNOTSUPP), hv.ExpandArray(a.Domain, new EvtchnExpandArray { ArrayGfn = 2 }));
    }

    [Fact]
    public void Default_policy_limits_other_domains_ports_to_the_control_domain_and_device_model()
    {
        var hv = new EventChannelHypervisor();
        using var dom0 = new TestGuest(hv, 0, vcpus: 1, control: true);
        using var a = new TestGuest(hv, 1, vcpus: 1);
        using var b = new TestGuest(hv, 2, vcpus: 1);
        var dm = hv.CreateDomain(new EventChannelDomainOptions { Id = 3, VcpuCount = 1, Upcall = new CountingUpcall(), DeviceModelFor = 1 });

        var au = new EvtchnAllocUnbound { Dom = 2, RemoteDom = 1 };
        Assert.Equal(E(XenErrno.EPERM), hv.AllocUnbound(a.Domain, ref au));
        Assert.Equal(0, hv.AllocUnbound(dom0.Domain, ref au));
        au = new EvtchnAllocUnbound { Dom = 1, RemoteDom = 0 };
        Assert.Equal(0, hv.AllocUnbound(dm, ref au));
        au = new EvtchnAllocUnbound { Dom = 9, RemoteDom = 0 };
        Assert.Equal(E(XenErrno.ESRCH), hv.AllocUnbound(dom0.Domain, ref au));

        var st = new EvtchnStatus { Dom = 2, Port = 1 };
        Assert.Equal(E(XenErrno.EPERM), hv.Status(a.Domain, ref st));
        Assert.Equal(0, hv.Status(dom0.Domain, ref st));
        Assert.Equal((uint)EventChannelStatusCode.Unbound, st.Status);

        Assert.Equal(E(XenErrno.EPERM), hv.Reset(a.Domain, 2));
        Assert.Equal(E(XenErrno.EINVAL), hv.Reset(dom0.Domain, 2)); // not paused by its controller
        b.Domain.IsPausedByController = true;
        Assert.Equal(0, hv.Reset(dom0.Domain, 2));
        Assert.Equal(ChannelState.Free, hv.GetState(b.Domain, 1));
    }

    [Fact]
    public void Virqs_reach_the_bound_vcpu_and_global_virqs_their_handler()
    {
        var hv = new EventChannelHypervisor();
        using var dom0 = new TestGuest(hv, 0, vcpus: 2, control: true);
        var timer = new EvtchnBindVirq { Virq = (uint)Virq.Timer, Vcpu = 1 };
        Assert.Equal(0, hv.BindVirq(dom0.Domain, ref timer));
        hv.SendVirq(dom0.Domain, 0, Virq.Timer); // not bound on vCPU 0
        Assert.Equal(0, dom0.Upcalls.Total);
        hv.SendVirq(dom0.Domain, 1, Virq.Timer);
        Assert.Equal(1, dom0.Upcalls.Count(1));

        var exc = new EvtchnBindVirq { Virq = (uint)Virq.DomExc, Vcpu = 0 };
        Assert.Equal(0, hv.BindVirq(dom0.Domain, ref exc));
        hv.SendGlobalVirq(Virq.DomExc); // no handler set yet
        Assert.False(hv.IsPending(dom0.Domain, exc.Port));
        hv.SetGlobalVirqHandler(Virq.DomExc, dom0.Domain);
        Assert.Equal(0, hv.BindVcpu(dom0.Domain, new EvtchnBindVcpu { Port = exc.Port, Vcpu = 1 }));
        hv.SendGlobalVirq(Virq.DomExc);
        Assert.True(hv.IsPending(dom0.Domain, exc.Port));
        var seen = new List<uint>();
        Assert.True(dom0.Drain(1, seen));
        Assert.Contains(exc.Port, seen);

        Assert.Equal(0, hv.Close(dom0.Domain, timer.Port));
        hv.SendVirq(dom0.Domain, 1, Virq.Timer); // closed: nothing
        Assert.False(hv.IsPending(dom0.Domain, timer.Port));
    }

    [Fact]
    public void Fifo_priorities_order_delivery_and_set_priority_checks_its_argument()
    {
        var hv = new EventChannelHypervisor();
        using var g = new TestGuest(hv, 1, vcpus: 1);
        g.InitFifo();
        Assert.Equal(EventChannelAbiKind.Fifo, g.Domain.Abi);
        var ports = new uint[3];
        for (int i = 0; i < 3; i++)
        {
            var ipi = new EvtchnBindIpi();
            Assert.Equal(0, hv.BindIpi(g.Domain, ref ipi));
            ports[i] = ipi.Port;
        }
        Assert.Equal(E(XenErrno.EINVAL), hv.SetPriority(g.Domain, new EvtchnSetPriority { Port = ports[0], Priority = 16 }));
        Assert.Equal(E(XenErrno.EINVAL), hv.SetPriority(g.Domain, new EvtchnSetPriority { Port = 5000, Priority = 1 }));
        Assert.Equal(0, hv.SetPriority(g.Domain, new EvtchnSetPriority { Port = ports[2], Priority = 0 }));
        foreach (uint p in ports)
            Assert.Equal(0, g.Send(p));
        // Queue 7 holds ports[0] -> ports[1], queue 0 holds ports[2]; the guest drains queue 0 first.
        Assert.Equal(ports[2], *g.Head(0, 0));
        Assert.Equal(ports[0], *g.Head(0, 7));
        Assert.Equal(ports[1], *g.Word(ports[0]) & FifoEventWord.LinkMask);
        Assert.Equal((1u << 0) | (1u << 7), *g.Ready(0));
        var seen = new List<uint>();
        Assert.True(g.Drain(0, seen));
        Assert.Equal([ports[2], ports[0], ports[1]], seen);
        Assert.Equal(1, g.Upcalls.Total);
    }

    [Fact]
    public void Reset_closes_everything_and_returns_to_two_level_dropping_every_frame_reference()
    {
        var hv = new EventChannelHypervisor();
        using var a = new TestGuest(hv, 1, vcpus: 2);
        using var b = new TestGuest(hv, 2, vcpus: 1);
        a.InitFifo(pages: 2);
        Assert.Equal(4, a.Frames.TotalReferences); // 2 control blocks in one frame + 2 array pages
        uint pa = a.AllocUnbound(2);
        uint pb = b.BindInterdomain(1, pa);
        Assert.Equal(0, hv.Reset(a.Domain, DomainId.Self));
        Assert.Equal(EventChannelAbiKind.TwoLevel, a.Domain.Abi);
        Assert.Equal(0, a.Frames.TotalReferences);
        Assert.Equal(ChannelState.Free, hv.GetState(a.Domain, pa));
        Assert.Equal(ChannelState.Unbound, hv.GetState(b.Domain, pb));
    }
}
