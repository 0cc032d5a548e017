using System.Text;
using VmmKit.Hypercall;
using VmmKit.TestSupport;

namespace VmmKit.Hypercall.Tests;

public class CpuidLeavesTests
{
    [Fact]
    public void Signature_leaf_reads_XenVMMXenVMM_and_names_the_last_leaf()
    {
        var leaves = new XenCpuidLeaves();
        Assert.True(leaves.TryGetLeaf(0x40000000, 0, 0, 1, out var r));
        Assert.Equal(0x40000005u, r.Eax);
        var sig = new byte[12];
        BitConverter.TryWriteBytes(sig.AsSpan(0), r.Ebx);
        BitConverter.TryWriteBytes(sig.AsSpan(4), r.Ecx);
        BitConverter.TryWriteBytes(sig.AsSpan(8), r.Edx);
        Assert.Equal("XenVMMXenVMM", Encoding.ASCII.GetString(sig));
    }

    [Fact]
    public void Version_hypercall_page_and_hvm_leaves()
    {
        var leaves = new XenCpuidLeaves { HvmFeatures = XenHvmCpuidFeatures.UpcallVector };
        Assert.True(leaves.TryGetLeaf(0x40000001, 0, 0, 1, out var v));
        Assert.Equal(new XenCpuidResult(0x0004_0011, 0, 0, 0), v);
        Assert.True(leaves.TryGetLeaf(0x40000002, 0, 0, 1, out var p));
        Assert.Equal(new XenCpuidResult(1, 0x40000000, 0, 0), p);
        Assert.True(leaves.TryGetLeaf(0x40000004, 0, 3, 7, out var h));
        Assert.Equal(new XenCpuidResult((1u << 3) | (1u << 4) | (1u << 6), 3, 7, 0), h);
        Assert.True(leaves.TryGetLeaf(0x40000004, 1, 3, 7, out var h1));
        Assert.Equal(default, h1);
        Assert.True(leaves.TryGetLeaf(0x40000005, 0, 3, 7, out var pv));
        Assert.Equal(default, pv);
        Assert.False(leaves.TryGetLeaf(0x40000006, 0, 0, 1, out _));
        Assert.False(leaves.TryGetLeaf(0x3FFFFFFF, 0, 0, 1, out _));
    }

    [Fact]
    public void Time_leaf_and_limit_clamping()
    {
        var leaves = new XenCpuidLeaves
        {
            Limit = 3,
            Time = new XenCpuidTime { Flags = 2, TscMode = 0, TscKhz = 2_000_000, Incarnation = 1, TscOffset = 0x1_0000_0002, MulFrac = 0x80000000, Shift = -1, HostTscKhz = 2_500_000 },
        };
        Assert.True(leaves.TryGetLeaf(0x40000000, 0, 0, 0, out var r));
        Assert.Equal(0x40000003u, r.Eax);
        leaves.TryGetLeaf(0x40000003, 0, 0, 0, out var t0);
        Assert.Equal(new XenCpuidResult(2, 0, 2_000_000, 1), t0);
        leaves.TryGetLeaf(0x40000003, 1, 0, 0, out var t1);
        Assert.Equal(new XenCpuidResult(2, 1, 0x80000000, 0xFFFFFFFF), t1);
        leaves.TryGetLeaf(0x40000003, 2, 0, 0, out var t2);
        Assert.Equal(2_500_000u, t2.Eax);
        Assert.False(leaves.TryGetLeaf(0x40000004, 0, 0, 0, out _));
        Assert.Equal(2u, new XenCpuidLeaves { Limit = 1 }.Limit);
        Assert.Equal(5u, new XenCpuidLeaves { Limit = 9 }.Limit);
        Assert.Equal(0x40000102u, new XenCpuidLeaves { Base = 0x40000100, Limit = 2 }.TryGetLeaf(0x40000100, 0, 0, 0, out var b) ? b.Eax : 0);
    }

    [Fact]
    public void Constants_match_the_cpuid_header()
    {
        var v = XenAbiLayout.Evaluate(["xen/arch-x86/cpuid.h"],
        [
            "XEN_CPUID_FIRST_LEAF", "XEN_CPUID_SIGNATURE_EBX", "XEN_CPUID_SIGNATURE_ECX", "XEN_CPUID_SIGNATURE_EDX", "XEN_CPUID_MAX_NUM_LEAVES",
            "XEN_HVM_CPUID_APIC_ACCESS_VIRT", "XEN_HVM_CPUID_X2APIC_VIRT", "XEN_HVM_CPUID_IOMMU_MAPPINGS", "XEN_HVM_CPUID_VCPU_ID_PRESENT",
            "XEN_HVM_CPUID_DOMID_PRESENT", "XEN_HVM_CPUID_EXT_DEST_ID", "XEN_HVM_CPUID_UPCALL_VECTOR",
        ]);
        Assert.Equal(
        [
            XenCpuidLeaves.FirstLeaf, XenCpuidLeaves.SignatureEbx, XenCpuidLeaves.SignatureEcx, XenCpuidLeaves.SignatureEdx, XenCpuidLeaves.MaxNumLeaves,
            (long)XenHvmCpuidFeatures.ApicAccessVirt, (long)XenHvmCpuidFeatures.X2ApicVirt, (long)XenHvmCpuidFeatures.IommuMappings,
            (long)XenHvmCpuidFeatures.VcpuIdPresent, (long)XenHvmCpuidFeatures.DomidPresent, (long)XenHvmCpuidFeatures.ExtDestId,
            (long)XenHvmCpuidFeatures.UpcallVector,
        ], v);
    }
}
