// The toolstack's part of Xen's ABI (xen/include/public/domctl.h, sysctl.h, memory.h, sched.h; interface versions of
// Xen 4.17, built with __XEN_TOOLS__), shared by both ends of the Dom0 channel: the hypervisor (vmmkit-hv links this
// file) and Dom0 (VmmKit.Dom0.Xen). Every layout is checked against Xen's headers by the layout oracle (Dom0 tests).
using System.Runtime.InteropServices;

namespace VmmKit.Dom0.Xen.Abi;

/// <summary>Interface versions and command numbers of domctl.h and sysctl.h (Xen 4.17).</summary>
internal static class ToolsAbi
{
    /// <summary>XEN_DOMCTL_INTERFACE_VERSION.</summary>
    public const uint DomctlInterfaceVersion = 0x15;

    /// <summary>XEN_SYSCTL_INTERFACE_VERSION.</summary>
    public const uint SysctlInterfaceVersion = 0x15;

    /// <summary>XEN_DOMCTL_createdomain.</summary>
    public const uint DomctlCreateDomain = 1;

    /// <summary>XEN_DOMCTL_destroydomain.</summary>
    public const uint DomctlDestroyDomain = 2;

    /// <summary>XEN_DOMCTL_pausedomain.</summary>
    public const uint DomctlPauseDomain = 3;

    /// <summary>XEN_DOMCTL_unpausedomain.</summary>
    public const uint DomctlUnpauseDomain = 4;

    /// <summary>XEN_DOMCTL_getdomaininfo.</summary>
    public const uint DomctlGetDomainInfo = 5;

    /// <summary>XEN_DOMCTL_max_mem.</summary>
    public const uint DomctlMaxMem = 11;

    /// <summary>XEN_DOMCTL_setvcpucontext.</summary>
    public const uint DomctlSetVcpuContext = 12;

    /// <summary>XEN_DOMCTL_getvcpucontext.</summary>
    public const uint DomctlGetVcpuContext = 13;

    /// <summary>XEN_DOMCTL_max_vcpus.</summary>
    public const uint DomctlMaxVcpus = 15;

    /// <summary>XEN_DOMCTL_gethvmcontext.</summary>
    public const uint DomctlGetHvmContext = 33;

    /// <summary>XEN_DOMCTL_sethvmcontext.</summary>
    public const uint DomctlSetHvmContext = 34;

    /// <summary>XEN_SYSCTL_physinfo.</summary>
    public const uint SysctlPhysInfo = 3;

    /// <summary>XEN_SYSCTL_getdomaininfolist.</summary>
    public const uint SysctlGetDomainInfoList = 6;

    /// <summary>XEN_DOMCTL_CDF_hvm: an HVM (here: PVH) container.</summary>
    public const uint CdfHvm = 1;

    /// <summary>XEN_DOMCTL_CDF_hap: hardware-assisted paging (EPT).</summary>
    public const uint CdfHap = 2;

    /// <summary>XEN_DOMCTL_GRANT_version_mask: the low 4 bits of grant_opts, the domain's highest grant-table version.</summary>
    public const uint GrantVersionMask = 0xF;

    /// <summary>XEN_SYSCTL_PHYSCAP_gnttab_v1: Xen supports the grant-table v1 ABI.</summary>
    public const uint PhysCapGnttabV1 = 1u << 8;

    /// <summary>XEN_SYSCTL_PHYSCAP_gnttab_v2: Xen supports the grant-table v2 ABI.</summary>
    public const uint PhysCapGnttabV2 = 1u << 9;

    /// <summary>XENMEM_populate_physmap.</summary>
    public const uint MemPopulatePhysmap = 6;

    /// <summary>sizeof(struct vcpu_guest_context) on x86-64.</summary>
    public const int VcpuGuestContextSize = 5168;

    /// <summary>VGCF_i387_valid: <c>fpu_ctxt</c> holds an FXSAVE image.</summary>
    public const ulong VgcfI387Valid = 1;

    /// <summary>VGCF_online: the vCPU is up (set: bring it up; clear: take it down).</summary>
    public const ulong VgcfOnline = 1 << 5;
}

/// <summary>XEN_DOMINF_* flags of xen_domctl_getdomaininfo.flags; the shutdown code sits at bits 16+ (XEN_DOMINF_shutdownshift).</summary>
[Flags]
internal enum DomainInfoFlags : uint
{
    /// <summary>No flag.</summary>
    None = 0,

    /// <summary>XEN_DOMINF_dying.</summary>
    Dying = 1,

    /// <summary>XEN_DOMINF_hvm_guest.</summary>
    HvmGuest = 2,

    /// <summary>XEN_DOMINF_shutdown.</summary>
    Shutdown = 4,

    /// <summary>XEN_DOMINF_paused.</summary>
    Paused = 8,

    /// <summary>XEN_DOMINF_blocked.</summary>
    Blocked = 16,

    /// <summary>XEN_DOMINF_running.</summary>
    Running = 32,

    /// <summary>XEN_DOMINF_hap.</summary>
    Hap = 256,
}

/// <summary><c>struct xen_domctl</c>: cmd, interface_version, domain, then the 128-byte union at 16 (144 bytes).</summary>
[StructLayout(LayoutKind.Explicit, Size = 144)]
internal struct XenDomctl
{
    /// <summary>XEN_DOMCTL_*.</summary>
    [FieldOffset(0)] public uint Cmd;

    /// <summary>Must be <see cref="ToolsAbi.DomctlInterfaceVersion"/>.</summary>
    [FieldOffset(4)] public uint InterfaceVersion;

    /// <summary>The target domain.</summary>
    [FieldOffset(8)] public ushort Domain;

    /// <summary>u.createdomain.</summary>
    [FieldOffset(16)] public XenDomctlCreateDomain CreateDomain;

    /// <summary>u.getdomaininfo.</summary>
    [FieldOffset(16)] public XenDomctlGetDomainInfo GetDomainInfo;

    /// <summary>u.max_mem.max_memkb.</summary>
    [FieldOffset(16)] public ulong MaxMemKb;

    /// <summary>u.max_vcpus.max.</summary>
    [FieldOffset(16)] public uint MaxVcpus;

    /// <summary>u.vcpucontext.vcpu.</summary>
    [FieldOffset(16)] public uint VcpuContextVcpu;

    /// <summary>u.vcpucontext.ctxt: a handle to a struct vcpu_guest_context.</summary>
    [FieldOffset(24)] public ulong VcpuContextCtxt;

    /// <summary>u.hvmcontext.size: bytes of the buffer (gethvmcontext writes back the stream's size).</summary>
    [FieldOffset(16)] public uint HvmContextSize;

    /// <summary>u.hvmcontext.buffer: a handle to the HVM save stream (xen/include/public/hvm/save.h), NULL to ask the size.</summary>
    [FieldOffset(24)] public ulong HvmContextBuffer;
}

/// <summary><c>struct xen_domctl_createdomain</c> (64 bytes).</summary>
[StructLayout(LayoutKind.Explicit, Size = 64)]
internal struct XenDomctlCreateDomain
{
    /// <summary>ssidref (XSM).</summary>
    [FieldOffset(0)] public uint SsidRef;

    /// <summary>handle: the toolstack's UUID.</summary>
    [FieldOffset(4)] public Guid Handle;

    /// <summary>XEN_DOMCTL_CDF_*.</summary>
    [FieldOffset(20)] public uint Flags;

    /// <summary>iommu_opts.</summary>
    [FieldOffset(24)] public uint IommuOpts;

    /// <summary>max_vcpus.</summary>
    [FieldOffset(28)] public uint MaxVcpus;

    /// <summary>max_evtchn_port.</summary>
    [FieldOffset(32)] public uint MaxEvtchnPort;

    /// <summary>max_grant_frames; negative: the hypervisor's default.</summary>
    [FieldOffset(36)] public int MaxGrantFrames;

    /// <summary>max_maptrack_frames; negative: the hypervisor's default.</summary>
    [FieldOffset(40)] public int MaxMaptrackFrames;

    /// <summary>grant_opts: XEN_DOMCTL_GRANT_version(v) in the low 4 bits (<see cref="ToolsAbi.GrantVersionMask"/>), no other bit.</summary>
    [FieldOffset(44)] public uint GrantOpts;

    /// <summary>vmtrace_size.</summary>
    [FieldOffset(48)] public uint VmtraceSize;

    /// <summary>cpupool_id.</summary>
    [FieldOffset(52)] public uint CpupoolId;

    /// <summary>arch.emulation_flags (struct xen_arch_domainconfig).</summary>
    [FieldOffset(56)] public uint ArchEmulationFlags;

    /// <summary>arch.misc_flags.</summary>
    [FieldOffset(60)] public uint ArchMiscFlags;
}

/// <summary><c>struct xen_domctl_getdomaininfo</c> (112 bytes; also the element of XEN_SYSCTL_getdomaininfolist).</summary>
[StructLayout(LayoutKind.Explicit, Size = 112)]
internal struct XenDomctlGetDomainInfo
{
    /// <summary>domain.</summary>
    [FieldOffset(0)] public ushort Domain;

    /// <summary>XEN_DOMINF_*, with the shutdown code at bits 16+.</summary>
    [FieldOffset(4)] public uint Flags;

    /// <summary>tot_pages.</summary>
    [FieldOffset(8)] public ulong TotPages;

    /// <summary>max_pages.</summary>
    [FieldOffset(16)] public ulong MaxPages;

    /// <summary>outstanding_pages.</summary>
    [FieldOffset(24)] public ulong OutstandingPages;

    /// <summary>shr_pages.</summary>
    [FieldOffset(32)] public ulong ShrPages;

    /// <summary>paged_pages.</summary>
    [FieldOffset(40)] public ulong PagedPages;

    /// <summary>shared_info_frame (a machine frame here).</summary>
    [FieldOffset(48)] public ulong SharedInfoFrame;

    /// <summary>cpu_time in nanoseconds.</summary>
    [FieldOffset(56)] public ulong CpuTime;

    /// <summary>nr_online_vcpus.</summary>
    [FieldOffset(64)] public uint NrOnlineVcpus;

    /// <summary>max_vcpu_id.</summary>
    [FieldOffset(68)] public uint MaxVcpuId;

    /// <summary>ssidref.</summary>
    [FieldOffset(72)] public uint SsidRef;

    /// <summary>handle.</summary>
    [FieldOffset(76)] public Guid Handle;

    /// <summary>cpupool.</summary>
    [FieldOffset(92)] public uint Cpupool;

    /// <summary>gpaddr_bits.</summary>
    [FieldOffset(96)] public byte GpaddrBits;

    /// <summary>arch_config.emulation_flags.</summary>
    [FieldOffset(104)] public uint ArchEmulationFlags;

    /// <summary>arch_config.misc_flags.</summary>
    [FieldOffset(108)] public uint ArchMiscFlags;
}

/// <summary><c>struct xen_sysctl</c>: cmd, interface_version, then the 128-byte union at 8 (136 bytes).</summary>
[StructLayout(LayoutKind.Explicit, Size = 136)]
internal struct XenSysctl
{
    /// <summary>XEN_SYSCTL_*.</summary>
    [FieldOffset(0)] public uint Cmd;

    /// <summary>Must be <see cref="ToolsAbi.SysctlInterfaceVersion"/>.</summary>
    [FieldOffset(4)] public uint InterfaceVersion;

    /// <summary>u.getdomaininfolist.first_domain.</summary>
    [FieldOffset(8)] public ushort FirstDomain;

    /// <summary>u.getdomaininfolist.max_domains.</summary>
    [FieldOffset(12)] public uint MaxDomains;

    /// <summary>u.getdomaininfolist.buffer: a handle to xen_domctl_getdomaininfo[max_domains].</summary>
    [FieldOffset(16)] public ulong Buffer;

    /// <summary>u.getdomaininfolist.num_domains (out).</summary>
    [FieldOffset(24)] public uint NumDomains;

    /// <summary>u.physinfo.</summary>
    [FieldOffset(8)] public XenSysctlPhysInfo PhysInfo;
}

/// <summary><c>struct xen_sysctl_physinfo</c> (112 bytes).</summary>
[StructLayout(LayoutKind.Explicit, Size = 112)]
internal struct XenSysctlPhysInfo
{
    /// <summary>threads_per_core.</summary>
    [FieldOffset(0)] public uint ThreadsPerCore;

    /// <summary>cores_per_socket.</summary>
    [FieldOffset(4)] public uint CoresPerSocket;

    /// <summary>nr_cpus.</summary>
    [FieldOffset(8)] public uint NrCpus;

    /// <summary>max_cpu_id.</summary>
    [FieldOffset(12)] public uint MaxCpuId;

    /// <summary>nr_nodes.</summary>
    [FieldOffset(16)] public uint NrNodes;

    /// <summary>max_node_id.</summary>
    [FieldOffset(20)] public uint MaxNodeId;

    /// <summary>cpu_khz.</summary>
    [FieldOffset(24)] public uint CpuKhz;

    /// <summary>capabilities (XEN_SYSCTL_PHYSCAP_*).</summary>
    [FieldOffset(28)] public uint Capabilities;

    /// <summary>total_pages.</summary>
    [FieldOffset(40)] public ulong TotalPages;

    /// <summary>free_pages.</summary>
    [FieldOffset(48)] public ulong FreePages;

    /// <summary>scrub_pages.</summary>
    [FieldOffset(56)] public ulong ScrubPages;

    /// <summary>outstanding_pages.</summary>
    [FieldOffset(64)] public ulong OutstandingPages;

    /// <summary>max_mfn.</summary>
    [FieldOffset(72)] public ulong MaxMfn;
}

/// <summary><c>struct xen_memory_reservation</c> (memory.h, 32 bytes on x86-64).</summary>
[StructLayout(LayoutKind.Explicit, Size = 32)]
internal struct XenMemoryReservation
{
    /// <summary>extent_start: a handle to xen_pfn_t[nr_extents] (the gfns for populate_physmap).</summary>
    [FieldOffset(0)] public ulong ExtentStart;

    /// <summary>nr_extents.</summary>
    [FieldOffset(8)] public ulong NrExtents;

    /// <summary>extent_order.</summary>
    [FieldOffset(16)] public uint ExtentOrder;

    /// <summary>mem_flags.</summary>
    [FieldOffset(20)] public uint MemFlags;

    /// <summary>domid.</summary>
    [FieldOffset(24)] public ushort Domid;
}

/// <summary>
/// <c>struct cpu_user_regs</c> for x86-64 (xen/include/public/arch-x86/xen-x86_64.h, 200 bytes): the general registers,
/// RIP, RFLAGS and the segment selectors, in Xen's order.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = 200)]
internal struct CpuUserRegs
{
    /// <summary>r15.</summary>
    [FieldOffset(0)] public ulong R15;

    /// <summary>r14.</summary>
    [FieldOffset(8)] public ulong R14;

    /// <summary>r13.</summary>
    [FieldOffset(16)] public ulong R13;

    /// <summary>r12.</summary>
    [FieldOffset(24)] public ulong R12;

    /// <summary>rbp.</summary>
    [FieldOffset(32)] public ulong Rbp;

    /// <summary>rbx.</summary>
    [FieldOffset(40)] public ulong Rbx;

    /// <summary>r11.</summary>
    [FieldOffset(48)] public ulong R11;

    /// <summary>r10.</summary>
    [FieldOffset(56)] public ulong R10;

    /// <summary>r9.</summary>
    [FieldOffset(64)] public ulong R9;

    /// <summary>r8.</summary>
    [FieldOffset(72)] public ulong R8;

    /// <summary>rax.</summary>
    [FieldOffset(80)] public ulong Rax;

    /// <summary>rcx.</summary>
    [FieldOffset(88)] public ulong Rcx;

    /// <summary>rdx.</summary>
    [FieldOffset(96)] public ulong Rdx;

    /// <summary>rsi.</summary>
    [FieldOffset(104)] public ulong Rsi;

    /// <summary>rdi.</summary>
    [FieldOffset(112)] public ulong Rdi;

    /// <summary>error_code (Xen-private).</summary>
    [FieldOffset(120)] public uint ErrorCode;

    /// <summary>entry_vector (Xen-private).</summary>
    [FieldOffset(124)] public uint EntryVector;

    /// <summary>rip.</summary>
    [FieldOffset(128)] public ulong Rip;

    /// <summary>cs.</summary>
    [FieldOffset(136)] public ushort Cs;

    /// <summary>saved_upcall_mask (PV only).</summary>
    [FieldOffset(140)] public byte SavedUpcallMask;

    /// <summary>rflags.</summary>
    [FieldOffset(144)] public ulong Rflags;

    /// <summary>rsp.</summary>
    [FieldOffset(152)] public ulong Rsp;

    /// <summary>ss.</summary>
    [FieldOffset(160)] public ushort Ss;

    /// <summary>es.</summary>
    [FieldOffset(168)] public ushort Es;

    /// <summary>ds.</summary>
    [FieldOffset(176)] public ushort Ds;

    /// <summary>fs.</summary>
    [FieldOffset(184)] public ushort Fs;

    /// <summary>gs.</summary>
    [FieldOffset(192)] public ushort Gs;
}

/// <summary>
/// <c>struct vcpu_guest_context</c> for x86-64 (xen/include/public/arch-x86/xen.h, 5168 bytes), the argument of
/// XEN_DOMCTL_setvcpucontext / getvcpucontext. The PV-only parts (trap table, LDT, GDT frames, kernel stack, callbacks)
/// are kept as bytes: an HVM/PVH vCPU has none.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = ToolsAbi.VcpuGuestContextSize)]
internal unsafe struct VcpuGuestContext
{
    /// <summary>fpu_ctxt: the FXSAVE image (valid with VGCF_i387_valid).</summary>
    [FieldOffset(0)] public fixed byte FpuCtxt[512];

    /// <summary>flags: VGCF_*.</summary>
    [FieldOffset(512)] public ulong Flags;

    /// <summary>user_regs.</summary>
    [FieldOffset(520)] public CpuUserRegs UserRegs;

    /// <summary>trap_ctxt[256], ldt_base, ldt_ents, gdt_frames[16], gdt_ents, kernel_ss, kernel_sp: PV only.</summary>
    [FieldOffset(720)] public fixed byte PvState[4264];

    /// <summary>ctrlreg[8]: CR0-CR7 (for HVM, CR3 is the guest's CR3 as it is, not <c>xen_pfn_to_cr3</c>-encoded).</summary>
    [FieldOffset(4984)] public fixed ulong CtrlReg[8];

    /// <summary>debugreg[8]: DR0-DR7.</summary>
    [FieldOffset(5048)] public fixed ulong DebugReg[8];

    /// <summary>event_callback_eip, failsafe_callback_eip, syscall_callback_eip: PV only.</summary>
    [FieldOffset(5112)] public fixed ulong PvCallbacks[3];

    /// <summary>vm_assist: VMASST_TYPE_* bitmap.</summary>
    [FieldOffset(5136)] public ulong VmAssist;

    /// <summary>fs_base.</summary>
    [FieldOffset(5144)] public ulong FsBase;

    /// <summary>gs_base_kernel.</summary>
    [FieldOffset(5152)] public ulong GsBaseKernel;

    /// <summary>gs_base_user.</summary>
    [FieldOffset(5160)] public ulong GsBaseUser;
}
