using VmmKit.Ept;
using VmmKit.TestSupport;

namespace VmmKit.Ept.Tests;

/// <summary>Values this package takes from Xen's public headers, checked against them with gcc.</summary>
public sealed class XenConstantsTests
{
    [Fact]
    public void Hypervisor_owner_is_DOMID_XEN_and_page_geometry_matches_xen_headers()
    {
        IReadOnlyList<long> v = XenAbiLayout.Evaluate(["xen/xen.h", "xen/io/ring.h"], ["DOMID_XEN", "sizeof(domid_t)", "XEN_PAGE_SHIFT"]);
        Assert.Equal(FrameOwner.Hypervisor.DomainId, v[0]);
        Assert.Equal(sizeof(ushort), v[1]); // FrameOwner.DomainId mirrors domid_t
        Assert.Equal(Page.PageShift, v[2]);
    }
}
