namespace VmmKit.Hypercall;

/// <summary>EAX flags of the HVM leaf, <c>base + 4</c> (<c>XEN_HVM_CPUID_*</c>, xen/arch-x86/cpuid.h).</summary>
[Flags]
public enum XenHvmCpuidFeatures : uint
{
    /// <summary>No flags.</summary>
    None = 0,
    /// <summary><c>XEN_HVM_CPUID_APIC_ACCESS_VIRT</c>: APIC register accesses are virtualized.</summary>
    ApicAccessVirt = 1u << 0,
    /// <summary><c>XEN_HVM_CPUID_X2APIC_VIRT</c>: x2APIC MSR accesses are virtualized.</summary>
    X2ApicVirt = 1u << 1,
    /// <summary><c>XEN_HVM_CPUID_IOMMU_MAPPINGS</c>: memory mapped from other domains has valid IOMMU entries.</summary>
    IommuMappings = 1u << 2,
    /// <summary><c>XEN_HVM_CPUID_VCPU_ID_PRESENT</c>: EBX holds the vCPU id (always set by <see cref="XenCpuidLeaves"/>).</summary>
    VcpuIdPresent = 1u << 3,
    /// <summary><c>XEN_HVM_CPUID_DOMID_PRESENT</c>: ECX holds the domain id (always set by <see cref="XenCpuidLeaves"/>).</summary>
    DomidPresent = 1u << 4,
    /// <summary><c>XEN_HVM_CPUID_EXT_DEST_ID</c>: 15-bit destination ids in MSI/IO-APIC.</summary>
    ExtDestId = 1u << 5,
    /// <summary><c>XEN_HVM_CPUID_UPCALL_VECTOR</c>: per-vCPU upcall vectors (<c>HVMOP_set_evtchn_upcall_vector</c>) work.</summary>
    UpcallVector = 1u << 6,
}
