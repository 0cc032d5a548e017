namespace VmmKit.Hypercall;

/// <summary>Feature bit numbers reported by <c>XENVER_get_features</c> (<c>XENFEAT_*</c>, xen/features.h).</summary>
public enum XenFeature
{
    /// <summary><c>XENFEAT_writable_page_tables</c>.</summary>
    WritablePageTables = 0,
    /// <summary><c>XENFEAT_writable_descriptor_tables</c>.</summary>
    WritableDescriptorTables = 1,
    /// <summary><c>XENFEAT_auto_translated_physmap</c>: the guest uses guest-physical frame numbers (always true for HVM/PVH).</summary>
    AutoTranslatedPhysmap = 2,
    /// <summary><c>XENFEAT_supervisor_mode_kernel</c>.</summary>
    SupervisorModeKernel = 3,
    /// <summary><c>XENFEAT_pae_pgdir_above_4gb</c>.</summary>
    PaePgdirAbove4Gb = 4,
    /// <summary><c>XENFEAT_mmu_pt_update_preserve_ad</c>.</summary>
    MmuPtUpdatePreserveAd = 5,
    /// <summary><c>XENFEAT_highmem_assist</c>.</summary>
    HighmemAssist = 6,
    /// <summary><c>XENFEAT_gnttab_map_avail_bits</c>.</summary>
    GnttabMapAvailBits = 7,
    /// <summary><c>XENFEAT_hvm_callback_vector</c>: HVM_PARAM_CALLBACK_IRQ may name a vector.</summary>
    HvmCallbackVector = 8,
    /// <summary><c>XENFEAT_hvm_safe_pvclock</c>.</summary>
    HvmSafePvclock = 9,
    /// <summary><c>XENFEAT_hvm_pirqs</c>.</summary>
    HvmPirqs = 10,
    /// <summary><c>XENFEAT_dom0</c>: the domain is the hardware domain.</summary>
    Dom0 = 11,
    /// <summary><c>XENFEAT_grant_map_identity</c>.</summary>
    GrantMapIdentity = 12,
    /// <summary><c>XENFEAT_memory_op_vnode_supported</c>.</summary>
    MemoryOpVnodeSupported = 13,
    /// <summary><c>XENFEAT_ARM_SMCCC_supported</c>.</summary>
    ArmSmcccSupported = 14,
    /// <summary><c>XENFEAT_linux_rsdp_unrestricted</c>.</summary>
    LinuxRsdpUnrestricted = 15,
    /// <summary><c>XENFEAT_not_direct_mapped</c>.</summary>
    NotDirectMapped = 16,
    /// <summary><c>XENFEAT_direct_mapped</c>.</summary>
    DirectMapped = 17,
}
