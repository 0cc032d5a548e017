namespace VmmKit.ReferenceHypervisor.Cpu;

/// <summary>
/// Xen's hypervisor CPUID leaves at 0x40000000 (xen/include/public/arch-x86/cpuid.h): the
/// "XenVMMXenVMM" signature, the version, the hypercall-page MSR and the HVM features leaf.
/// </summary>
internal static class XenCpuidLeaves
{
    /// <summary>XEN_CPUID_FIRST_LEAF.</summary>
    public const uint Base = 0x40000000;

    /// <summary>The last leaf we answer: base + 4, the HVM-specific leaf.</summary>
    public const uint MaxLeaf = Base + 4;

    /// <summary>The MSR a guest writes the hypercall page's address to (leaf base+2, EBX); Xen uses the base leaf number.</summary>
    public const uint HypercallPageMsr = 0x40000000;

    /// <summary>XEN_CPUID_SIGNATURE_EBX/ECX/EDX: "XenV" "MMXe" "nVMM".</summary>
    public const uint SignatureEbx = 0x566e6558, SignatureEcx = 0x65584d4d, SignatureEdx = 0x4d4d566e;

    /// <summary>XEN_HVM_CPUID_VCPU_ID_PRESENT and XEN_HVM_CPUID_DOMID_PRESENT.</summary>
    public const uint HvmVcpuIdPresent = 1u << 3, HvmDomidPresent = 1u << 4;

    /// <summary>True for the leaves in Xen's range (0x40000000-0x400000ff).</summary>
    public static bool Contains(uint leaf) => (leaf & 0xFFFFFF00) == Base;

    /// <summary>Answers one of Xen's leaves for vCPU <paramref name="vcpuId"/> of domain <paramref name="domainId"/>.</summary>
    public static CpuidResult Get(uint leaf, uint subleaf, int vcpuId, ushort domainId) => (leaf - Base) switch
    {
        0 => new CpuidResult(MaxLeaf, SignatureEbx, SignatureEcx, SignatureEdx),
        1 => new CpuidResult(XenIdentity.VersionNumber, 0, 0, 0),
        2 => new CpuidResult(1, HypercallPageMsr, 0, 0),            // one hypercall page, no PV feature bits
        3 => default,                                                  // TSC leaf: default mode, frequency unknown
        4 => subleaf == 0 ? new CpuidResult(HvmVcpuIdPresent | HvmDomidPresent, (uint)vcpuId, domainId, 0) : default,
        _ => default,
    };
}
