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
}
