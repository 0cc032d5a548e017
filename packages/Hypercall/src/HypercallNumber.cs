namespace VmmKit.Hypercall;

/// <summary>
/// Xen hypercall numbers: the value a guest puts in EAX/RAX before VMCALL (or calls at
/// <c>hypercall_page + 32 * number</c>). Values and names are Xen's <c>__HYPERVISOR_*</c>
/// constants from <c>xen/xen.h</c>; a handler table is indexed by them.
/// </summary>
public enum HypercallNumber : uint
{
    /// <summary><c>__HYPERVISOR_set_trap_table</c> (PV only).</summary>
    SetTrapTable = 0,
    /// <summary><c>__HYPERVISOR_mmu_update</c> (PV only).</summary>
    MmuUpdate = 1,
    /// <summary><c>__HYPERVISOR_set_gdt</c> (PV only).</summary>
    SetGdt = 2,
    /// <summary><c>__HYPERVISOR_stack_switch</c> (PV only).</summary>
    StackSwitch = 3,
    /// <summary><c>__HYPERVISOR_set_callbacks</c> (PV only).</summary>
    SetCallbacks = 4,
    /// <summary><c>__HYPERVISOR_fpu_taskswitch</c> (PV only).</summary>
    FpuTaskswitch = 5,
    /// <summary><c>__HYPERVISOR_sched_op_compat</c>: the pre-3.0.2 scheduler operation.</summary>
    SchedOpCompat = 6,
    /// <summary><c>__HYPERVISOR_platform_op</c>: platform management (control domain only).</summary>
    PlatformOp = 7,
    /// <summary><c>__HYPERVISOR_set_debugreg</c> (PV only).</summary>
    SetDebugreg = 8,
    /// <summary><c>__HYPERVISOR_get_debugreg</c> (PV only).</summary>
    GetDebugreg = 9,
    /// <summary><c>__HYPERVISOR_update_descriptor</c> (PV only).</summary>
    UpdateDescriptor = 10,
    /// <summary><c>__HYPERVISOR_memory_op</c>: memory reservation and physmap operations (<c>xen/memory.h</c>).</summary>
    MemoryOp = 12,
    /// <summary><c>__HYPERVISOR_multicall</c>: a batch of hypercalls described by <c>struct multicall_entry</c>.</summary>
    Multicall = 13,
    /// <summary><c>__HYPERVISOR_update_va_mapping</c> (PV only).</summary>
    UpdateVaMapping = 14,
    /// <summary><c>__HYPERVISOR_set_timer_op</c>: one-shot timer for the calling vCPU.</summary>
    SetTimerOp = 15,
    /// <summary><c>__HYPERVISOR_event_channel_op_compat</c>: the pre-3.0.2 event channel operation.</summary>
    EventChannelOpCompat = 16,
    /// <summary><c>__HYPERVISOR_xen_version</c>: version and feature queries (<c>xen/version.h</c>).</summary>
    XenVersion = 17,
    /// <summary><c>__HYPERVISOR_console_io</c>: the emergency console (<c>CONSOLEIO_*</c>).</summary>
    ConsoleIo = 18,
    /// <summary><c>__HYPERVISOR_physdev_op_compat</c>: the pre-3.0.2 physical device operation.</summary>
    PhysdevOpCompat = 19,
    /// <summary><c>__HYPERVISOR_grant_table_op</c>: grant tables (<c>xen/grant_table.h</c>).</summary>
    GrantTableOp = 20,
    /// <summary><c>__HYPERVISOR_vm_assist</c>: enable or disable VM assists.</summary>
    VmAssist = 21,
    /// <summary><c>__HYPERVISOR_update_va_mapping_otherdomain</c> (PV only).</summary>
    UpdateVaMappingOtherdomain = 22,
    /// <summary><c>__HYPERVISOR_iret</c> (PV only; its hypercall-page stub is <c>ud2</c> for HVM guests).</summary>
    Iret = 23,
    /// <summary><c>__HYPERVISOR_vcpu_op</c>: per-vCPU operations (<c>xen/vcpu.h</c>).</summary>
    VcpuOp = 24,
    /// <summary><c>__HYPERVISOR_set_segment_base</c> (x86-64 PV only).</summary>
    SetSegmentBase = 25,
    /// <summary><c>__HYPERVISOR_mmuext_op</c> (PV only).</summary>
    MmuextOp = 26,
    /// <summary><c>__HYPERVISOR_xsm_op</c>: security module operations.</summary>
    XsmOp = 27,
    /// <summary><c>__HYPERVISOR_nmi_op</c>: NMI callback registration.</summary>
    NmiOp = 28,
    /// <summary><c>__HYPERVISOR_sched_op</c>: yield, block, shutdown, poll (<c>xen/sched.h</c>).</summary>
    SchedOp = 29,
    /// <summary><c>__HYPERVISOR_callback_op</c>: callback registration (<c>xen/callback.h</c>).</summary>
    CallbackOp = 30,
    /// <summary><c>__HYPERVISOR_xenoprof_op</c>: profiling.</summary>
    XenoprofOp = 31,
    /// <summary><c>__HYPERVISOR_event_channel_op</c>: event channels (<c>xen/event_channel.h</c>).</summary>
    EventChannelOp = 32,
    /// <summary><c>__HYPERVISOR_physdev_op</c>: physical devices and interrupts (<c>xen/physdev.h</c>).</summary>
    PhysdevOp = 33,
    /// <summary><c>__HYPERVISOR_hvm_op</c>: HVM parameters and controls (<c>xen/hvm/hvm_op.h</c>).</summary>
    HvmOp = 34,
    /// <summary><c>__HYPERVISOR_sysctl</c>: system control (control domain only).</summary>
    Sysctl = 35,
    /// <summary><c>__HYPERVISOR_domctl</c>: domain control (control domain only).</summary>
    Domctl = 36,
    /// <summary><c>__HYPERVISOR_kexec_op</c>: kexec.</summary>
    KexecOp = 37,
    /// <summary><c>__HYPERVISOR_tmem_op</c>: transcendent memory (removed from Xen).</summary>
    TmemOp = 38,
    /// <summary><c>__HYPERVISOR_argo_op</c>: Argo inter-domain messaging.</summary>
    ArgoOp = 39,
    /// <summary><c>__HYPERVISOR_xenpmu_op</c>: performance monitoring.</summary>
    XenpmuOp = 40,
    /// <summary><c>__HYPERVISOR_dm_op</c>: device-model operations.</summary>
    DmOp = 41,
    /// <summary><c>__HYPERVISOR_hypfs_op</c>: hypervisor filesystem.</summary>
    HypfsOp = 42,
    /// <summary><c>__HYPERVISOR_arch_0</c>; on x86 this is <c>__HYPERVISOR_mca</c>.</summary>
    Arch0 = 48,
    /// <summary><c>__HYPERVISOR_arch_1</c>; on x86 this is <c>__HYPERVISOR_paging_domctl_cont</c>.</summary>
    Arch1 = 49,
    /// <summary><c>__HYPERVISOR_arch_2</c>.</summary>
    Arch2 = 50,
    /// <summary><c>__HYPERVISOR_arch_3</c>.</summary>
    Arch3 = 51,
    /// <summary><c>__HYPERVISOR_arch_4</c>.</summary>
    Arch4 = 52,
    /// <summary><c>__HYPERVISOR_arch_5</c>.</summary>
    Arch5 = 53,
    /// <summary><c>__HYPERVISOR_arch_6</c>.</summary>
    Arch6 = 54,
    /// <summary><c>__HYPERVISOR_arch_7</c>.</summary>
    Arch7 = 55,
}
