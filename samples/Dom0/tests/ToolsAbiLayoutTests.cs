using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using VmmKit.Dom0.Xen.Abi;
using VmmKit.TestSupport;

namespace VmmKit.Dom0.Tests;

/// <summary>The toolstack ABI structs both ends of the Dom0 channel use, against Xen's headers (built with __XEN_TOOLS__).</summary>
public sealed class ToolsAbiLayoutTests
{
    private static readonly string[] Headers = ["xen/xen.h", "xen/domctl.h", "xen/sysctl.h", "xen/memory.h"];

    private static long[] Eval(params string[] expressions) =>
        [.. XenAbiLayout.Evaluate(Headers, expressions, defines: ["__XEN_TOOLS__"])];

    [Fact]
    public void Interface_versions_and_commands_are_Xen_4_17s()
    {
        Assert.Equal(
            Eval("XEN_DOMCTL_INTERFACE_VERSION", "XEN_SYSCTL_INTERFACE_VERSION", "XEN_DOMCTL_createdomain", "XEN_DOMCTL_destroydomain",
                "XEN_DOMCTL_pausedomain", "XEN_DOMCTL_unpausedomain", "XEN_DOMCTL_getdomaininfo", "XEN_DOMCTL_max_mem",
                "XEN_DOMCTL_setvcpucontext", "XEN_DOMCTL_max_vcpus", "XEN_SYSCTL_physinfo", "XEN_SYSCTL_getdomaininfolist",
                "XEN_DOMCTL_CDF_hvm", "XEN_DOMCTL_CDF_hap", "XENMEM_populate_physmap", "XEN_DOMINF_dying", "XEN_DOMINF_hvm_guest",
                "XEN_DOMINF_shutdown", "XEN_DOMINF_paused", "XEN_DOMINF_blocked", "XEN_DOMINF_running", "XEN_DOMINF_hap",
                "XEN_DOMINF_shutdownshift"),
            new long[] {ToolsAbi.DomctlInterfaceVersion, ToolsAbi.SysctlInterfaceVersion, ToolsAbi.DomctlCreateDomain, ToolsAbi.DomctlDestroyDomain,
                ToolsAbi.DomctlPauseDomain, ToolsAbi.DomctlUnpauseDomain, ToolsAbi.DomctlGetDomainInfo, ToolsAbi.DomctlMaxMem,
                ToolsAbi.DomctlSetVcpuContext, ToolsAbi.DomctlMaxVcpus, ToolsAbi.SysctlPhysInfo, ToolsAbi.SysctlGetDomainInfoList,
                ToolsAbi.CdfHvm, ToolsAbi.CdfHap, ToolsAbi.MemPopulatePhysmap, (long)DomainInfoFlags.Dying, (long)DomainInfoFlags.HvmGuest,
                (long)DomainInfoFlags.Shutdown, (long)DomainInfoFlags.Paused, (long)DomainInfoFlags.Blocked, (long)DomainInfoFlags.Running,
                (long)DomainInfoFlags.Hap, 16});
    }

    [Fact]
    public void Grant_table_options_and_capabilities_are_Xen_4_17s()
    {
        Assert.Equal(
            Eval("XEN_DOMCTL_GRANT_version_mask", "XEN_DOMCTL_GRANT_version(0x12)", "XEN_SYSCTL_PHYSCAP_gnttab_v1", "XEN_SYSCTL_PHYSCAP_gnttab_v2"),
            new long[] {ToolsAbi.GrantVersionMask, 0x12 & ToolsAbi.GrantVersionMask, ToolsAbi.PhysCapGnttabV1, ToolsAbi.PhysCapGnttabV2});
    }

    [Fact]
    public void Domctl_structs_match()
    {
        Assert.Equal(
            Eval("sizeof(struct xen_domctl)", "offsetof(struct xen_domctl, interface_version)", "offsetof(struct xen_domctl, domain)",
                "offsetof(struct xen_domctl, u)", "offsetof(struct xen_domctl, u.max_mem.max_memkb)", "offsetof(struct xen_domctl, u.max_vcpus.max)",
                "offsetof(struct xen_domctl, u.vcpucontext.vcpu)", "offsetof(struct xen_domctl, u.vcpucontext.ctxt)",
                "XEN_DOMCTL_gethvmcontext", "XEN_DOMCTL_sethvmcontext", "offsetof(struct xen_domctl, u.hvmcontext.size)",
                "offsetof(struct xen_domctl, u.hvmcontext.buffer)"),
            new long[] {Unsafe.SizeOf<XenDomctl>(), 4, 8, 16, 16, 16, 16, 24, ToolsAbi.DomctlGetHvmContext, ToolsAbi.DomctlSetHvmContext,
                System.Runtime.InteropServices.Marshal.OffsetOf<XenDomctl>(nameof(XenDomctl.HvmContextSize)),
                System.Runtime.InteropServices.Marshal.OffsetOf<XenDomctl>(nameof(XenDomctl.HvmContextBuffer))});
        Assert.Equal(
            Eval("sizeof(struct xen_domctl_createdomain)", "offsetof(struct xen_domctl_createdomain, handle)", "offsetof(struct xen_domctl_createdomain, flags)",
                "offsetof(struct xen_domctl_createdomain, iommu_opts)", "offsetof(struct xen_domctl_createdomain, max_vcpus)",
                "offsetof(struct xen_domctl_createdomain, max_evtchn_port)", "offsetof(struct xen_domctl_createdomain, max_grant_frames)",
                "offsetof(struct xen_domctl_createdomain, max_maptrack_frames)", "offsetof(struct xen_domctl_createdomain, grant_opts)",
                "offsetof(struct xen_domctl_createdomain, vmtrace_size)", "offsetof(struct xen_domctl_createdomain, cpupool_id)",
                "offsetof(struct xen_domctl_createdomain, arch.emulation_flags)", "offsetof(struct xen_domctl_createdomain, arch.misc_flags)"),
            new long[] {Unsafe.SizeOf<XenDomctlCreateDomain>(), 4, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60});
        Assert.Equal(
            Eval("sizeof(struct xen_domctl_getdomaininfo)", "offsetof(struct xen_domctl_getdomaininfo, flags)", "offsetof(struct xen_domctl_getdomaininfo, tot_pages)",
                "offsetof(struct xen_domctl_getdomaininfo, max_pages)", "offsetof(struct xen_domctl_getdomaininfo, shared_info_frame)",
                "offsetof(struct xen_domctl_getdomaininfo, cpu_time)", "offsetof(struct xen_domctl_getdomaininfo, nr_online_vcpus)",
                "offsetof(struct xen_domctl_getdomaininfo, max_vcpu_id)", "offsetof(struct xen_domctl_getdomaininfo, ssidref)",
                "offsetof(struct xen_domctl_getdomaininfo, handle)", "offsetof(struct xen_domctl_getdomaininfo, cpupool)",
                "offsetof(struct xen_domctl_getdomaininfo, gpaddr_bits)", "offsetof(struct xen_domctl_getdomaininfo, arch_config)"),
            new long[] {Unsafe.SizeOf<XenDomctlGetDomainInfo>(), 4, 8, 16, 48, 56, 64, 68, 72, 76, 92, 96, 104});
    }

    [Fact]
    public void Vcpu_guest_context_matches_x86_64()
    {
        string[] regs = ["r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi", "rdi",
            "error_code", "entry_vector", "rip", "cs", "saved_upcall_mask", "rflags", "rsp", "ss", "es", "ds", "fs", "gs"];
        string[] fields = ["fpu_ctxt", "flags", "user_regs", "trap_ctxt", "ctrlreg", "debugreg", "event_callback_eip", "vm_assist",
            "fs_base", "gs_base_kernel", "gs_base_user"];
        string[] names = ["FpuCtxt", "Flags", "UserRegs", "PvState", "CtrlReg", "DebugReg", "PvCallbacks", "VmAssist", "FsBase", "GsBaseKernel", "GsBaseUser"];
        Assert.Equal(
            Eval([.. regs.Select(r => $"offsetof(struct cpu_user_regs, {r})"), "sizeof(struct cpu_user_regs)",
                .. fields.Select(f => $"offsetof(struct vcpu_guest_context, {f})"), "sizeof(struct vcpu_guest_context)",
                "XEN_DOMCTL_getvcpucontext", "VGCF_i387_valid", "VGCF_online"]),
            (long[])[.. regs.Select(r => (long)Marshal.OffsetOf<CpuUserRegs>(Pascal(r))), Unsafe.SizeOf<CpuUserRegs>(),
                .. names.Select(n => (long)Marshal.OffsetOf<VcpuGuestContext>(n)), Unsafe.SizeOf<VcpuGuestContext>(),
                ToolsAbi.DomctlGetVcpuContext, (long)ToolsAbi.VgcfI387Valid, (long)ToolsAbi.VgcfOnline]);
    }

    private static string Pascal(string cName) => string.Concat(cName.Split('_').Select(p => char.ToUpperInvariant(p[0]) + p[1..]));

    [Fact]
    public void Sysctl_and_memory_structs_match()
    {
        Assert.Equal(
            Eval("sizeof(struct xen_sysctl)", "offsetof(struct xen_sysctl, u)", "offsetof(struct xen_sysctl, u.getdomaininfolist.first_domain)",
                "offsetof(struct xen_sysctl, u.getdomaininfolist.max_domains)", "offsetof(struct xen_sysctl, u.getdomaininfolist.buffer)",
                "offsetof(struct xen_sysctl, u.getdomaininfolist.num_domains)", "sizeof(struct xen_sysctl_physinfo)",
                "offsetof(struct xen_sysctl_physinfo, nr_cpus)", "offsetof(struct xen_sysctl_physinfo, cpu_khz)",
                "offsetof(struct xen_sysctl_physinfo, total_pages)", "offsetof(struct xen_sysctl_physinfo, free_pages)",
                "offsetof(struct xen_sysctl_physinfo, max_mfn)"),
            new long[] {Unsafe.SizeOf<XenSysctl>(), 8, 8, 12, 16, 24, Unsafe.SizeOf<XenSysctlPhysInfo>(), 8, 24, 40, 48, 72});
        Assert.Equal(
            Eval("sizeof(struct xen_memory_reservation)", "offsetof(struct xen_memory_reservation, nr_extents)",
                "offsetof(struct xen_memory_reservation, extent_order)", "offsetof(struct xen_memory_reservation, domid)"),
            new long[] {Unsafe.SizeOf<XenMemoryReservation>(), 8, 16, 24});
    }
}
