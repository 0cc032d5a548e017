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
}
