using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using VmmKit.TestSupport;
using Xunit.Sdk;

namespace VmmKit.TestSupport.Tests;

public class AbiLayoutAssertTests
{
    private static readonly string[] Headers = ["xen/xen.h", "xen/event_channel.h"];

    // struct evtchn_alloc_unbound { domid_t dom, remote_dom; evtchn_port_t port; } (xen/event_channel.h)
    [StructLayout(LayoutKind.Sequential)]
    private struct AllocUnbound
    {
        public ushort Dom;
        public ushort RemoteDom;
        public uint Port;
    }

    // The same members with the port where a wrong mirror would put it.
    [StructLayout(LayoutKind.Sequential, Pack = 1)]
    private struct PackedAllocUnbound
    {
        public ushort Dom;
        public byte RemoteDom;
        public uint Port;
    }

    [Fact]
    public void Offset_is_the_byte_offset_of_the_field()
    {
        var s = default(AllocUnbound);
        Assert.Equal(0, XenAbiLayout.Offset(ref s, ref s.Dom));
        Assert.Equal(2, XenAbiLayout.Offset(ref s, ref s.RemoteDom));
        Assert.Equal(4, XenAbiLayout.Offset(ref s, ref s.Port));
    }

    [Theory]
    [InlineData(64)]
    [InlineData(32)]
    public void A_matching_mirror_passes_in_both_abis(int bits)
    {
        var s = default(AllocUnbound);
        XenAbiLayout.AssertLayout(Headers, bits, ("struct evtchn_alloc_unbound", Unsafe.SizeOf<AllocUnbound>(),
            [("dom", XenAbiLayout.Offset(ref s, ref s.Dom)), ("remote_dom", XenAbiLayout.Offset(ref s, ref s.RemoteDom)), ("port", XenAbiLayout.Offset(ref s, ref s.Port))]));
    }

    [Fact]
    public void A_wrong_mirror_fails_naming_every_mismatch()
    {
        var s = default(PackedAllocUnbound);
        var e = Assert.ThrowsAny<XunitException>(() => XenAbiLayout.AssertLayout(Headers, 64, ("struct evtchn_alloc_unbound", Unsafe.SizeOf<PackedAllocUnbound>(),
            [("dom", XenAbiLayout.Offset(ref s, ref s.Dom)), ("remote_dom", XenAbiLayout.Offset(ref s, ref s.RemoteDom)), ("port", XenAbiLayout.Offset(ref s, ref s.Port))])));
        Assert.Contains("sizeof(struct evtchn_alloc_unbound) [64-bit]: C# 7, gcc 8", e.Message);
        Assert.Contains("offsetof(struct evtchn_alloc_unbound, port) [64-bit]: C# 3, gcc 4", e.Message);
        Assert.DoesNotContain("remote_dom", e.Message);
    }

    [Fact]
    public void Constants_are_compared_in_the_abi_asked_for()
    {
        // xen_ulong_t is 8 bytes for x86-64 and 4 for i386 (xen/arch-x86/xen.h).
        XenAbiLayout.AssertValues(Headers, 64, [("sizeof(xen_ulong_t)", 8), ("__HYPERVISOR_event_channel_op", 32)]);
        XenAbiLayout.AssertValues(Headers, 32, [("sizeof(xen_ulong_t)", 4), ("__HYPERVISOR_event_channel_op", 32)]);
        var e = Assert.ThrowsAny<XunitException>(() => XenAbiLayout.AssertValues(Headers, 32, [("sizeof(xen_ulong_t)", 8)]));
        Assert.Contains("sizeof(xen_ulong_t) [32-bit]: C# 8, gcc 4", e.Message);
    }

    [Fact]
    public void Only_the_two_x86_abis_and_a_non_empty_list_are_accepted()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => XenAbiLayout.AssertValues(Headers, 16, [("sizeof(xen_ulong_t)", 2)]));
        Assert.Throws<ArgumentException>(() => XenAbiLayout.AssertValues(Headers, 64, []));
    }
}
