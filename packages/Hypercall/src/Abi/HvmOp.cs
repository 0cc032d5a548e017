using System.Runtime.InteropServices;

namespace VmmKit.Hypercall;

/// <summary>
/// Sub-operations of <c>__HYPERVISOR_hvm_op(op, arg)</c> (<c>HVMOP_*</c>, xen/hvm/hvm_op.h) at interface
/// version 0x00040e00 (numbers 2-4, the PCI/ISA interrupt-level operations, moved to dm_op in 4.9).
/// </summary>
public enum HvmOp : uint
{
    /// <summary><c>HVMOP_set_param</c>: arg is <see cref="XenHvmParam"/>.</summary>
    SetParam = 0,
    /// <summary><c>HVMOP_get_param</c>: arg is <see cref="XenHvmParam"/>; <c>value</c> is filled in.</summary>
    GetParam = 1,
    /// <summary><c>HVMOP_flush_tlbs</c>.</summary>
    FlushTlbs = 5,
    /// <summary><c>HVMOP_pagetable_dying</c>.</summary>
    PagetableDying = 9,
    /// <summary><c>HVMOP_get_time</c>.</summary>
    GetTime = 10,
    /// <summary><c>HVMOP_xentrace</c>.</summary>
    Xentrace = 11,
    /// <summary><c>HVMOP_set_mem_access</c>.</summary>
    SetMemAccess = 12,
    /// <summary><c>HVMOP_get_mem_access</c>.</summary>
    GetMemAccess = 13,
    /// <summary><c>HVMOP_get_mem_type</c>.</summary>
    GetMemType = 15,
    /// <summary><c>HVMOP_set_evtchn_upcall_vector</c>.</summary>
    SetEvtchnUpcallVector = 23,
    /// <summary><c>HVMOP_guest_request_vm_event</c>.</summary>
    GuestRequestVmEvent = 24,
    /// <summary><c>HVMOP_altp2m</c>.</summary>
    Altp2m = 25,
}

/// <summary><c>struct xen_hvm_param</c> (xen/hvm/hvm_op.h): 16 bytes in both ABIs.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct XenHvmParam
{
    /// <summary><c>domid</c> (IN): target domain, normally <see cref="DomainId.Self"/>.</summary>
    public ushort Domid;
    /// <summary><c>pad</c>.</summary>
    public ushort Pad;
    /// <summary><c>index</c> (IN): an <see cref="HvmParam"/> value.</summary>
    public uint Index;
    /// <summary><c>value</c> (IN for set, OUT for get).</summary>
    public ulong Value;
}

/// <summary>HVM parameter indices (<c>HVM_PARAM_*</c>, xen/hvm/params.h). <c>HVM_NR_PARAMS</c> is <see cref="Count"/>.</summary>
public enum HvmParam : uint
{
    /// <summary><c>HVM_PARAM_CALLBACK_IRQ</c>: how event-channel upcalls are delivered (type in bits 63:56, see <see cref="HvmCallbackType"/>).</summary>
    CallbackIrq = 0,
    /// <summary><c>HVM_PARAM_STORE_PFN</c>: guest frame of the XenStore ring.</summary>
    StorePfn = 1,
    /// <summary><c>HVM_PARAM_STORE_EVTCHN</c>: event channel of the XenStore ring.</summary>
    StoreEvtchn = 2,
    /// <summary><c>HVM_PARAM_PAE_ENABLED</c>.</summary>
    PaeEnabled = 4,
    /// <summary><c>HVM_PARAM_IOREQ_PFN</c>.</summary>
    IoreqPfn = 5,
    /// <summary><c>HVM_PARAM_BUFIOREQ_PFN</c>.</summary>
    BufioreqPfn = 6,
    /// <summary><c>HVM_PARAM_VIRIDIAN</c>.</summary>
    Viridian = 9,
    /// <summary><c>HVM_PARAM_TIMER_MODE</c>.</summary>
    TimerMode = 10,
    /// <summary><c>HVM_PARAM_HPET_ENABLED</c>.</summary>
    HpetEnabled = 11,
    /// <summary><c>HVM_PARAM_IDENT_PT</c>.</summary>
    IdentPt = 12,
    /// <summary><c>HVM_PARAM_DM_DOMAIN</c>.</summary>
    DmDomain = 13,
    /// <summary><c>HVM_PARAM_ACPI_S_STATE</c>.</summary>
    AcpiSState = 14,
    /// <summary><c>HVM_PARAM_VM86_TSS</c>.</summary>
    Vm86Tss = 15,
    /// <summary><c>HVM_PARAM_VPT_ALIGN</c>.</summary>
    VptAlign = 16,
    /// <summary><c>HVM_PARAM_CONSOLE_PFN</c>: guest frame of the PV console ring.</summary>
    ConsolePfn = 17,
    /// <summary><c>HVM_PARAM_CONSOLE_EVTCHN</c>: event channel of the PV console ring.</summary>
    ConsoleEvtchn = 18,
    /// <summary><c>HVM_PARAM_ACPI_IOPORTS_LOCATION</c>.</summary>
    AcpiIoportsLocation = 19,
    /// <summary><c>HVM_PARAM_MEMORY_EVENT_CR0</c> (deprecated: Xen answers -EINVAL).</summary>
    MemoryEventCr0 = 20,
    /// <summary><c>HVM_PARAM_MEMORY_EVENT_CR3</c> (deprecated: Xen answers -EINVAL).</summary>
    MemoryEventCr3 = 21,
    /// <summary><c>HVM_PARAM_MEMORY_EVENT_CR4</c> (deprecated: Xen answers -EINVAL).</summary>
    MemoryEventCr4 = 22,
    /// <summary><c>HVM_PARAM_MEMORY_EVENT_INT3</c> (deprecated: Xen answers -EINVAL).</summary>
    MemoryEventInt3 = 23,
    /// <summary><c>HVM_PARAM_NESTEDHVM</c>.</summary>
    NestedHvm = 24,
    /// <summary><c>HVM_PARAM_MEMORY_EVENT_SINGLE_STEP</c> (deprecated: Xen answers -EINVAL).</summary>
    MemoryEventSingleStep = 25,
    /// <summary><c>HVM_PARAM_BUFIOREQ_EVTCHN</c>.</summary>
    BufioreqEvtchn = 26,
    /// <summary><c>HVM_PARAM_PAGING_RING_PFN</c>.</summary>
    PagingRingPfn = 27,
    /// <summary><c>HVM_PARAM_MONITOR_RING_PFN</c>.</summary>
    MonitorRingPfn = 28,
    /// <summary><c>HVM_PARAM_SHARING_RING_PFN</c>.</summary>
    SharingRingPfn = 29,
    /// <summary><c>HVM_PARAM_MEMORY_EVENT_MSR</c> (deprecated: Xen answers -EINVAL).</summary>
    MemoryEventMsr = 30,
    /// <summary><c>HVM_PARAM_TRIPLE_FAULT_REASON</c>.</summary>
    TripleFaultReason = 31,
    /// <summary><c>HVM_PARAM_IOREQ_SERVER_PFN</c>.</summary>
    IoreqServerPfn = 32,
    /// <summary><c>HVM_PARAM_NR_IOREQ_SERVER_PAGES</c>.</summary>
    NrIoreqServerPages = 33,
    /// <summary><c>HVM_PARAM_VM_GENERATION_ID_ADDR</c>.</summary>
    VmGenerationIdAddr = 34,
    /// <summary><c>HVM_PARAM_ALTP2M</c>.</summary>
    Altp2m = 35,
    /// <summary><c>HVM_PARAM_X87_FIP_WIDTH</c>.</summary>
    X87FipWidth = 36,
    /// <summary><c>HVM_PARAM_VM86_TSS_SIZED</c>.</summary>
    Vm86TssSized = 37,
    /// <summary><c>HVM_PARAM_MCA_CAP</c>.</summary>
    McaCap = 38,
    /// <summary><c>HVM_NR_PARAMS</c>: number of parameters; indices at or above it are -EINVAL in Xen.</summary>
    Count = 39,
}

/// <summary>Delivery types in bits 63:56 of <see cref="HvmParam.CallbackIrq"/> (<c>HVM_PARAM_CALLBACK_TYPE_*</c>).</summary>
public enum HvmCallbackType : byte
{
    /// <summary><c>HVM_PARAM_CALLBACK_TYPE_GSI</c>: bits 55:0 are a GSI (0 disables upcalls).</summary>
    Gsi = 0,
    /// <summary><c>HVM_PARAM_CALLBACK_TYPE_PCI_INTX</c>: bits 55:0 name a PCI INTx line.</summary>
    PciIntx = 1,
    /// <summary><c>HVM_PARAM_CALLBACK_TYPE_VECTOR</c>: bits 7:0 are the vector injected directly.</summary>
    Vector = 2,
}
