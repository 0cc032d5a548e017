using VmmKit.TestSupport;

namespace VmmKit.TestSupport.Tests;

public class XenAbiLayoutTests
{
    [Fact]
    public void Evaluates_sizes_and_offsets_from_xen_headers()
    {
        // struct evtchn_alloc_unbound { domid_t dom, remote_dom; evtchn_port_t port; } (xen/event_channel.h)
        var v = XenAbiLayout.Evaluate(["xen/xen.h", "xen/event_channel.h"],
            ["sizeof(struct evtchn_alloc_unbound)", "offsetof(struct evtchn_alloc_unbound, port)", "__HYPERVISOR_event_channel_op"]);
        Assert.Equal([8L, 4L, 32L], v);
    }

    [Fact]
    public void A_bad_expression_fails_loudly()
    {
        Assert.Throws<InvalidOperationException>(() => XenAbiLayout.Value("xen/xen.h", "sizeof(struct no_such_struct)"));
    }
}
