using VmmKit.Hypercall;

namespace VmmKit.EventChannel.Tests;

/// <summary>
/// The hypervisor side checked statement by statement against Xen 4.17's xen/common/event_channel.c,
/// event_channel.h and event_fifo.c: which errno a guest gets when several of its inputs are bad.
/// </summary>
public class Xen417SourceTests
{
    private static long E(XenErrno e) => e.Negated();

    /// <summary>
    /// Xen 4.17's evtchn_status looks the port up (-EINVAL for a port never allocated) before it asks
    /// XSM (xsm_evtchn_status): a domain probing another domain's ports gets -EINVAL past the last
    /// allocated port and -EPERM below it.
    /// </summary>
    [Fact]
    public void Status_checks_the_port_before_the_policy()
    {
        var hv = new EventChannelHypervisor();
        using var dom0 = new TestGuest(hv, 0, vcpus: 1, control: true);
        using var g = new TestGuest(hv, 1, vcpus: 1);

        var status = new EvtchnStatus { Dom = 0, Port = 5000 };
        Assert.Equal(E(XenErrno.EINVAL), hv.Status(g.Domain, ref status));
        status = new EvtchnStatus { Dom = 0, Port = 1 };
        Assert.Equal(E(XenErrno.EPERM), hv.Status(g.Domain, ref status));
    }

    /// <summary>
    /// Xen 4.17's evtchn_port_set_priority (event_channel.h): -ENOSYS without FIFO, then -EACCES for a
    /// port that is not usable (free, or the reserved port 0), and only then the FIFO ABI's -EINVAL for a
    /// priority above 15 (evtchn_fifo_set_priority).
    /// </summary>
    [Fact]
    public void Set_priority_of_a_port_that_is_not_bound_is_eacces()
    {
        var hv = new EventChannelHypervisor();
        using var g = new TestGuest(hv, 1, vcpus: 1);
        Assert.Equal(E(XenErrno.ENOSYS), hv.SetPriority(g.Domain, new EvtchnSetPriority { Port = 0, Priority = 3 }));

        g.InitFifo();
        var ipi = new EvtchnBindIpi();
        Assert.Equal(0, hv.BindIpi(g.Domain, ref ipi));
        Assert.Equal(0, hv.Close(g.Domain, ipi.Port)); // valid, free
        Assert.Equal(E(XenErrno.EACCES), hv.SetPriority(g.Domain, new EvtchnSetPriority { Port = 0, Priority = 3 }));
        Assert.Equal(E(XenErrno.EACCES), hv.SetPriority(g.Domain, new EvtchnSetPriority { Port = 0, Priority = 16 }));
        Assert.Equal(E(XenErrno.EACCES), hv.SetPriority(g.Domain, new EvtchnSetPriority { Port = ipi.Port, Priority = 3 }));
        Assert.Equal(E(XenErrno.EINVAL), hv.SetPriority(g.Domain, new EvtchnSetPriority { Port = 5000, Priority = 3 }));

        Assert.Equal(0, hv.BindIpi(g.Domain, ref ipi));
        Assert.Equal(E(XenErrno.EINVAL), hv.SetPriority(g.Domain, new EvtchnSetPriority { Port = ipi.Port, Priority = 16 }));
        Assert.Equal(0, hv.SetPriority(g.Domain, new EvtchnSetPriority { Port = ipi.Port, Priority = 15 }));
    }

    /// <summary>
    /// Xen 4.17's evtchn_alloc_unbound allocates the port (get_free_port: -ENOSPC when the target has none
    /// left) before it asks XSM (xsm_evtchn_unbound) about that port: a full target answers -ENOSPC even to
    /// a domain XSM would refuse.
    /// </summary>
    [Fact]
    public void Alloc_unbound_allocates_before_the_policy()
    {
        var hv = new EventChannelHypervisor();
        using var full = new TestGuest(hv, 2, vcpus: 1, maxPorts: 1); // only the reserved port 0
        using var open = new TestGuest(hv, 3, vcpus: 1);
        using var g = new TestGuest(hv, 1, vcpus: 1);

        var op = new EvtchnAllocUnbound { Dom = 2, RemoteDom = 1 };
        Assert.Equal(E(XenErrno.ENOSPC), hv.AllocUnbound(g.Domain, ref op));
        op = new EvtchnAllocUnbound { Dom = 3, RemoteDom = 1, Port = 77 };
        Assert.Equal(E(XenErrno.EPERM), hv.AllocUnbound(g.Domain, ref op));
        Assert.Equal(77u, op.Port);
        Assert.Equal(ChannelState.Free, hv.GetState(open.Domain, 1)); // the refused port stays free
        Assert.Equal(1u, open.AllocUnbound(1));
    }

    /// <summary>
    /// Xen 4.17's evtchn_bind_interdomain allocates the local port and checks the remote one (-ENOSPC,
    /// -EINVAL) before it asks XSM (xsm_evtchn_interdomain, which the dummy policy always allows): a
    /// replaced policy that refuses is consulted last.
    /// </summary>
    [Fact]
    public void Bind_interdomain_checks_the_ports_before_the_policy()
    {
        var hv = new EventChannelHypervisor(new RefusingPolicy());
        using var peer = new TestGuest(hv, 2, vcpus: 1);
        using var g = new TestGuest(hv, 1, vcpus: 1);
        using var full = new TestGuest(hv, 3, vcpus: 1, maxPorts: 1);
        uint unbound = peer.AllocUnbound(1);

        var op = new EvtchnBindInterdomain { RemoteDom = 2, RemotePort = 999 };
        Assert.Equal(E(XenErrno.EINVAL), hv.BindInterdomain(g.Domain, ref op));
        op = new EvtchnBindInterdomain { RemoteDom = 2, RemotePort = unbound };
        Assert.Equal(E(XenErrno.ENOSPC), hv.BindInterdomain(full.Domain, ref op));
        Assert.Equal(E(XenErrno.EACCES), hv.BindInterdomain(g.Domain, ref op));
        Assert.Equal(ChannelState.Free, hv.GetState(g.Domain, 1));
        Assert.Equal(ChannelState.Unbound, hv.GetState(peer.Domain, unbound));
    }

    /// <summary>
    /// The orders that were already Xen 4.17's (checked the same, pinned here): evtchn_bind_virq (-EINVAL for
    /// the VIRQ, then a global VIRQ off vCPU 0, then -ENOENT, then -EEXIST before any port is allocated),
    /// evtchn_bind_vcpu and evtchn_fifo_init_control (-ENOENT first), and the EVTCHNOP_reset case of
    /// do_event_channel_op with evtchn_reset (-ESRCH, XSM's -EPERM, then -EINVAL for a domain not paused).
    /// </summary>
    [Fact]
    public void Orders_already_the_same_as_xen_417()
    {
        var hv = new EventChannelHypervisor();
        using var dom0 = new TestGuest(hv, 0, vcpus: 1, control: true);
        using var g = new TestGuest(hv, 1, vcpus: 1, maxPorts: 2);

        var virq = new EvtchnBindVirq { Virq = 0x8000_0000, Vcpu = 7 };
        Assert.Equal(E(XenErrno.EINVAL), hv.BindVirq(g.Domain, ref virq));
        virq = new EvtchnBindVirq { Virq = (uint)Virq.DomExc, Vcpu = 7 };
        Assert.Equal(E(XenErrno.EINVAL), hv.BindVirq(g.Domain, ref virq));
        virq = new EvtchnBindVirq { Virq = (uint)Virq.Timer, Vcpu = 7 };
        Assert.Equal(E(XenErrno.ENOENT), hv.BindVirq(g.Domain, ref virq));
        virq = new EvtchnBindVirq { Virq = (uint)Virq.Timer, Vcpu = 0 };
        Assert.Equal(0, hv.BindVirq(g.Domain, ref virq)); // port 1, the last one
        Assert.Equal(E(XenErrno.EEXIST), hv.BindVirq(g.Domain, ref virq));
        virq = new EvtchnBindVirq { Virq = (uint)Virq.Debug, Vcpu = 0 };
        Assert.Equal(E(XenErrno.ENOSPC), hv.BindVirq(g.Domain, ref virq));

        Assert.Equal(E(XenErrno.ENOENT), hv.BindVcpu(g.Domain, new EvtchnBindVcpu { Port = 5000, Vcpu = 7 }));
        Assert.Equal(E(XenErrno.EINVAL), hv.BindVcpu(g.Domain, new EvtchnBindVcpu { Port = 1, Vcpu = 0 })); // per-vCPU VIRQ
        var init = new EvtchnInitControl { ControlGfn = 999, Offset = 4030, Vcpu = 7 };
        Assert.Equal(E(XenErrno.ENOENT), hv.InitControl(g.Domain, ref init));

        Assert.Equal(E(XenErrno.ESRCH), hv.Reset(g.Domain, 9));
        Assert.Equal(E(XenErrno.EPERM), hv.Reset(g.Domain, 0));
        Assert.Equal(E(XenErrno.EINVAL), hv.Reset(dom0.Domain, 1));
    }

    /// <summary>
    /// Xen 4.17's evtchn_fifo_is_pending reads the event word and answers false for a port the event array
    /// does not cover yet: the pending state evtchn_fifo_set_pending saved for it stays invisible (to
    /// SCHEDOP_poll too) until expand_array adds its page and re-raises it (evtchn_fifo_expand_array).
    /// </summary>
    [Fact]
    public void A_port_without_an_event_word_is_not_pending()
    {
        var hv = new EventChannelHypervisor();
        using var g = new TestGuest(hv, 1, vcpus: 1, maxPorts: 2048);
        g.InitFifo(pages: 1);
        var ipi = new EvtchnBindIpi();
        do
            Assert.Equal(0, hv.BindIpi(g.Domain, ref ipi));
        while (ipi.Port < 1024);

        Assert.Equal(0, g.Send(ipi.Port));
        Assert.False(hv.IsPending(g.Domain, ipi.Port));

        Assert.Equal(0, hv.ExpandArray(g.Domain, new EvtchnExpandArray { ArrayGfn = TestGuest.FirstArrayGfn + 1 }));
        Assert.True(hv.IsPending(g.Domain, ipi.Port));
        Assert.True(g.GuestPending(ipi.Port));
    }

    // A policy that refuses every interdomain binding with -EACCES (FLASK's answer); the rest is the dummy's.
    private sealed class RefusingPolicy : IEventChannelPolicy
    {
        public long Unbound(EventChannelDomain caller, EventChannelDomain target, ushort remoteDomain) =>
            DummyEventChannelPolicy.Instance.Unbound(caller, target, remoteDomain);

        public long Interdomain(EventChannelDomain local, EventChannelDomain remote) => XenErrno.EACCES.Negated();

        public long Send(EventChannelDomain caller, uint port) => 0;

        public long Status(EventChannelDomain caller, EventChannelDomain target) => DummyEventChannelPolicy.Instance.Status(caller, target);

        public long Reset(EventChannelDomain caller, EventChannelDomain target) => DummyEventChannelPolicy.Instance.Reset(caller, target);
    }
}
