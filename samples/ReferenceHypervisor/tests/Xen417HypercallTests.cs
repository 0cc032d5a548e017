using System.Runtime.InteropServices;
using VmmKit.Dom0.Xen.Abi;
using VmmKit.Hypercall;
using VmmKit.ReferenceHypervisor.Hypercalls;

using static VmmKit.ReferenceHypervisor.Tests.HypercallMachine;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// The guest hypercalls checked against Xen 4.17.5's own source: each test makes one call as a guest would (the VMCALL's
/// registers through <see cref="Machine.Hypercalls"/>) and expects what that version of Xen answers, naming the function.
/// </summary>
public class Xen417HypercallTests
{
    [Fact]
    public void Set_singleshot_timer_ignores_VCPU_SSHOTTMR_future_and_fires_a_passed_deadline_at_once()
    {
        // Xen 4.17's common_vcpu_op (xen/common/domain.c), VCPUOP_set_singleshot_timer: the flags are not looked at; a
        // deadline already passed stops the timer and sends VIRQ_TIMER at once, and the call returns 0 (never -ETIME).
        var (machine, d) = Build();
        using var owner = machine;
        var v = d.Vcpus[0];
        Assert.True(GuestTime.TryAdvance(v, GuestTime.ToTicks(1_000_000_000)));
        ulong past = GuestTime.SystemTime(v) - 1_000_000;
        var page = new GuestPage();
        MemoryMarshal.Write(page.Bytes, new VcpuSetSingleshotTimer { TimeoutAbsNs = past, Flags = VcpuSetSingleshotTimer.FlagFuture });

        Assert.Equal(0, Call(machine, v, page, HypercallNumber.VcpuOp, (ulong)VcpuOp.SetSingleshotTimer, 0, 0));
        Assert.Equal(past, v.Timers.Singleshot);   // due: it fires at the vCPU's next timer check
        Assert.Equal(0, Call(machine, v, page, HypercallNumber.VcpuOp, (ulong)VcpuOp.SetSingleshotTimer, 0, 0, compat: true));
    }

    [Fact]
    public void Xen_version_commandline_is_denied_text_not_EPERM_for_a_guest()
    {
        // Xen 4.17's do_xen_version (xen/common/kernel.c): XENVER_commandline for a domain xsm_xen_version denies copies
        // xen_deny()'s "<denied>" with its NUL (9 bytes) and returns 0; only XENVER_build_id answers -EPERM.
        var (machine, d) = Build();
        using var owner = machine;
        var page = new GuestPage();
        page.Bytes.AsSpan().Fill(0xAA);

        Assert.Equal(0, Call(machine, d.Vcpus[0], page, HypercallNumber.XenVersion, (ulong)XenVersionCommand.Commandline, 0));
        Assert.Equal("<denied>\0"u8.ToArray(), page.Bytes[..9]);
        Assert.Equal(0xAA, page.Bytes[9]);
        Assert.Equal(XenErrno.EFAULT.Negated(),
            Call(machine, d.Vcpus[0], page, HypercallNumber.XenVersion, (ulong)XenVersionCommand.Commandline, 0x10000));
        Assert.Equal(XenErrno.EPERM.Negated(), Call(machine, d.Vcpus[0], page, HypercallNumber.XenVersion, (ulong)XenVersionCommand.BuildId, 0));
    }

    [Fact]
    public void Xen_version_get_features_has_the_bits_Xen_4_17_gives_a_PVH_domain()
    {
        // Xen 4.17's do_xen_version, XENVER_get_features submap 0 for a translated HVM domain without PIRQs that is not
        // the hardware domain: memory_op_vnode_supported, writable_page_tables, auto_translated_physmap,
        // hvm_safe_pvclock, hvm_callback_vector and not_direct_mapped.
        var (machine, d) = Build();
        using var owner = machine;
        var page = new GuestPage();
        Assert.Equal(0, Call(machine, d.Vcpus[0], page, HypercallNumber.XenVersion, (ulong)XenVersionCommand.GetFeatures, 0));
        uint submap = MemoryMarshal.Read<uint>(page.Bytes.AsSpan(4));   // after submap_idx
        uint expected = (1u << 13) | (1u << 0) | (1u << 2) | (1u << 9) | (1u << 8) | (1u << 16);
        Assert.Equal($"0x{expected:x}", $"0x{submap:x}");
    }

    [Fact]
    public void Sched_poll_of_a_port_that_is_free_or_reserved_is_EINVAL()
    {
        // Xen 4.17's do_poll (xen/common/sched/core.c) through evtchn_port_poll (xen/include/xen/event.h): a port past
        // the allocated ones, or one evtchn_usable refuses (free, or port 0, reserved), is -EINVAL; the poll does not
        // block on it.
        var (machine, d) = Build();
        using var owner = machine;
        var v = d.Vcpus[0];
        var page = new GuestPage();
        foreach (uint port in new uint[] { 0, 40 })
        {
            MemoryMarshal.Write(page.Bytes, new SchedPoll { Ports = 64, NrPorts = 1, Timeout = 0 });
            MemoryMarshal.Write(page.Bytes.AsSpan(64), port);
            Assert.Equal(XenErrno.EINVAL.Negated(), Call(machine, v, page, HypercallNumber.SchedOp, (ulong)SchedOp.Poll, 0));
            Assert.False(v.IsBlocked);
        }
    }

    [Fact]
    public void Domctl_and_sysctl_check_the_buffer_the_version_and_the_domain_before_privilege()
    {
        // Xen 4.17's do_domctl (xen/common/domctl.c): copy_from_guest (-EFAULT), interface_version (-EACCES), the domain
        // for any command but createdomain and getdomaininfo (-ESRCH), and only then xsm_domctl (-EPERM for a guest).
        // do_sysctl (xen/common/sysctl.c): -EFAULT, -EACCES, then xsm_sysctl's -EPERM.
        var (machine, d) = Build();
        using var owner = machine;
        var v = d.Vcpus[0];
        var page = new GuestPage();
        Assert.Equal(XenErrno.EFAULT.Negated(), Call(machine, v, page, HypercallNumber.Domctl, 0x10000));
        Assert.Equal(XenErrno.EFAULT.Negated(), Call(machine, v, page, HypercallNumber.Sysctl, 0x10000));

        MemoryMarshal.Write(page.Bytes, new XenDomctl { Cmd = ToolsAbi.DomctlPauseDomain, InterfaceVersion = 0x14, Domain = 77 });
        Assert.Equal(XenErrno.EACCES.Negated(), Call(machine, v, page, HypercallNumber.Domctl, 0));
        MemoryMarshal.Write(page.Bytes, new XenSysctl { Cmd = ToolsAbi.SysctlPhysInfo, InterfaceVersion = 0x14 });
        Assert.Equal(XenErrno.EACCES.Negated(), Call(machine, v, page, HypercallNumber.Sysctl, 0));

        MemoryMarshal.Write(page.Bytes, new XenDomctl { Cmd = ToolsAbi.DomctlPauseDomain, InterfaceVersion = ToolsAbi.DomctlInterfaceVersion, Domain = 77 });
        Assert.Equal(XenErrno.ESRCH.Negated(), Call(machine, v, page, HypercallNumber.Domctl, 0));
        MemoryMarshal.Write(page.Bytes, new XenDomctl { Cmd = 999, InterfaceVersion = ToolsAbi.DomctlInterfaceVersion, Domain = 77 });
        Assert.Equal(XenErrno.ESRCH.Negated(), Call(machine, v, page, HypercallNumber.Domctl, 0));
        MemoryMarshal.Write(page.Bytes, new XenDomctl { Cmd = ToolsAbi.DomctlGetDomainInfo, InterfaceVersion = ToolsAbi.DomctlInterfaceVersion, Domain = 77 });
        Assert.Equal(XenErrno.EPERM.Negated(), Call(machine, v, page, HypercallNumber.Domctl, 0));
        MemoryMarshal.Write(page.Bytes, new XenDomctl { Cmd = ToolsAbi.DomctlPauseDomain, InterfaceVersion = ToolsAbi.DomctlInterfaceVersion, Domain = d.Id });
        Assert.Equal(XenErrno.EPERM.Negated(), Call(machine, v, page, HypercallNumber.Domctl, 0));
        MemoryMarshal.Write(page.Bytes, new XenSysctl { Cmd = ToolsAbi.SysctlPhysInfo, InterfaceVersion = ToolsAbi.SysctlInterfaceVersion });
        Assert.Equal(XenErrno.EPERM.Negated(), Call(machine, v, page, HypercallNumber.Sysctl, 0));
    }

    [Fact]
    public void Vcpu_initialise_of_a_vcpu_past_32_without_a_registered_vcpu_info_is_EINVAL()
    {
        // Xen 4.17's common_vcpu_op and compat_common_vcpu_op: VCPUOP_initialise of a vCPU whose vcpu_info is still
        // dummy_vcpu_info (id 32 and up, nothing registered) is -EINVAL, before the context is read.
        var (machine, d) = Build(vcpus: 33);
        using var owner = machine;
        var page = new GuestPage();
        Assert.Equal(XenErrno.EINVAL.Negated(), Call(machine, d.Vcpus[0], page, HypercallNumber.VcpuOp, (ulong)VcpuOp.Initialise, 32, 0x10000));
        Assert.Equal(XenErrno.EINVAL.Negated(),
            Call(machine, d.Vcpus[0], page, HypercallNumber.VcpuOp, (ulong)VcpuOp.Initialise, 32, 0x10000, compat: true));
        Assert.False(d.Vcpus[32].IsInitialised);
        // vCPU 31 has its slot in shared_info: the context is read (-EFAULT for this pointer).
        Assert.Equal(XenErrno.EFAULT.Negated(), Call(machine, d.Vcpus[0], page, HypercallNumber.VcpuOp, (ulong)VcpuOp.Initialise, 31, 0x10000));
    }

    [Fact]
    public void Maximum_ram_page_is_one_past_the_highest_frame_as_max_page()
    {
        // Xen 4.17's do_memory_op returns max_page for XENMEM_maximum_ram_page: the frame count (setup.c sets it to
        // PFN_UP of the end of RAM), not the highest frame number.
        var (machine, d) = Build();
        using var owner = machine;
        Assert.Equal((long)machine.Memory.FrameCount,
            Call(machine, d.Vcpus[0], new GuestPage(), HypercallNumber.MemoryOp, (ulong)MemoryOp.MaximumRamPage));
    }

    [Fact]
    public void Add_to_physmap_answers_each_space_as_Xen_4_17()
    {
        // Xen 4.17's do_memory_op: XENMAPSPACE_gmfn_foreign is -ENOSYS before the domain is looked up;
        // xatp_permission_check: XENMAPSPACE_dev_mmio is -EACCES for a domain that is not the hardware domain;
        // xenmem_add_to_physmap_one (xen/arch/x86/mm/p2m.c): a space it does not know leaves no frame, -EINVAL.
        var (machine, d) = Build();
        using var owner = machine;
        var v = d.Vcpus[0];
        var page = new GuestPage();
        MemoryMarshal.Write(page.Bytes, new XenAddToPhysmap { Domid = 77, Space = (uint)XenMapSpace.GmfnForeign, Gpfn = 0x500 });
        Assert.Equal(XenErrno.ENOSYS.Negated(), Call(machine, v, page, HypercallNumber.MemoryOp, (ulong)MemoryOp.AddToPhysmap, 0));
        MemoryMarshal.Write(page.Bytes, new XenAddToPhysmap { Domid = DomainId.Self, Space = (uint)XenMapSpace.DevMmio, Gpfn = 0x500 });
        Assert.Equal(XenErrno.EACCES.Negated(), Call(machine, v, page, HypercallNumber.MemoryOp, (ulong)MemoryOp.AddToPhysmap, 0));
        MemoryMarshal.Write(page.Bytes, new XenAddToPhysmap { Domid = DomainId.Self, Space = 99, Gpfn = 0x500 });
        Assert.Equal(XenErrno.EINVAL.Negated(), Call(machine, v, page, HypercallNumber.MemoryOp, (ulong)MemoryOp.AddToPhysmap, 0));
        // A known space for another domain is still refused by XSM first.
        MemoryMarshal.Write(page.Bytes, new XenAddToPhysmap { Domid = 77, Space = 99, Gpfn = 0x500 });
        Assert.Equal(XenErrno.ESRCH.Negated(), Call(machine, v, page, HypercallNumber.MemoryOp, (ulong)MemoryOp.AddToPhysmap, 0));
    }

    [Fact]
    public void Get_vnumainfo_the_feature_advertises_answers_EOPNOTSUPP_for_a_domain_without_vNUMA()
    {
        // Xen 4.17's do_memory_op, XENMEM_get_vnumainfo: -EINVAL with a start extent, -EFAULT, -EINVAL for a nonzero pad,
        // -ESRCH for a missing domain, XSM_TARGET's -EPERM for another one, then -EOPNOTSUPP when d->vnuma is NULL.
        var (machine, d) = Build();
        using var owner = machine;
        var v = d.Vcpus[0];
        var page = new GuestPage();
        const ulong Op = (ulong)MemoryOp.GetVnumainfo;
        Assert.Equal(XenErrno.EINVAL.Negated(), Call(machine, v, page, HypercallNumber.MemoryOp, Op | (1 << 6), 0));
        Assert.Equal(XenErrno.EFAULT.Negated(), Call(machine, v, page, HypercallNumber.MemoryOp, Op, 0x10000 - 16));
        MemoryMarshal.Write(page.Bytes, (uint)DomainId.Self | (1u << 16));
        Assert.Equal(XenErrno.EINVAL.Negated(), Call(machine, v, page, HypercallNumber.MemoryOp, Op, 0));
        MemoryMarshal.Write(page.Bytes, 77u);
        Assert.Equal(XenErrno.ESRCH.Negated(), Call(machine, v, page, HypercallNumber.MemoryOp, Op, 0));
        MemoryMarshal.Write(page.Bytes, (uint)DomainId.Self);
        Assert.Equal(XenErrno.EOPNOTSUPP.Negated(), Call(machine, v, page, HypercallNumber.MemoryOp, Op, 0));
        Assert.Equal(XenErrno.EOPNOTSUPP.Negated(), Call(machine, v, page, HypercallNumber.MemoryOp, Op, 0, compat: true));
    }

    [Fact]
    public void Register_vcpu_info_crossing_the_page_or_misaligned_is_ENXIO()
    {
        // Xen 4.17.5's map_vcpu_info (xen/common/domain.c): an offset past PAGE_SIZE - sizeof(vcpu_info) or not aligned
        // to alignof(vcpu_info) (8 for the 64-bit layout) is -ENXIO, before the other checks (-EINVAL).
        var (machine, d) = Build();
        using var owner = machine;
        var page = new GuestPage();
        foreach (uint offset in new uint[] { 4096 - 63, 4 })
        {
            MemoryMarshal.Write(page.Bytes, new VcpuRegisterVcpuInfo { Mfn = 0x300, Offset = offset });
            Assert.Equal(XenErrno.ENXIO.Negated(), Call(machine, d.Vcpus[0], page, HypercallNumber.VcpuOp, (ulong)VcpuOp.RegisterVcpuInfo, 0, 0));
        }

        Assert.False(d.Vcpus[0].Time.IsRegistered);
    }

    [Fact]
    public void Remote_shutdown_passes_the_reason_on_as_a_byte_unchecked()
    {
        // Xen 4.17's do_sched_op, SCHEDOP_remote_shutdown: domain_shutdown(d, reason) takes the reason as a u8 and does
        // not check it, as SCHEDOP_shutdown.
        var (machine, dom0) = BuildDom0();
        using var owner = machine;
        var other = new Domain(machine, 2, "other", 1, privileged: false, upcall: null);
        machine.AddDomain(other);
        var page = new GuestPage();
        MemoryMarshal.Write(page.Bytes, new SchedRemoteShutdown { DomainId = 2, Reason = 0x100 | (uint)ShutdownReason.Watchdog });
        Assert.Equal(0, Call(machine, dom0.Vcpus[0], page, HypercallNumber.SchedOp, (ulong)SchedOp.RemoteShutdown, 0));
        Assert.True(other.IsShutdown);
        Assert.Equal(ShutdownReason.Watchdog, other.ShutdownReason);
    }

    [Fact]
    public void Console_io_with_an_unknown_command_is_EPERM_for_a_guest_and_ENOSYS_for_domain_0()
    {
        // Xen 4.17's do_console_io (xen/drivers/char/console.c) asks xsm_console_io first: its default policy lets a
        // domain that is not the console domain make only CONSOLEIO_write (in a debug build), so any other command is
        // -EPERM for it; domain 0 reaches the switch, where an unknown command is -ENOSYS.
        var (machine, d) = Build();
        using var owner = machine;
        Assert.Equal(XenErrno.EPERM.Negated(), Call(machine, d.Vcpus[0], new GuestPage(), HypercallNumber.ConsoleIo, 7, 0, 0));

        var (host, dom0) = BuildDom0();
        using var hostOwner = host;
        Assert.Equal(XenErrno.ENOSYS.Negated(), Call(host, dom0.Vcpus[0], new GuestPage(), HypercallNumber.ConsoleIo, 7, 0, 0));
    }

    [Fact]
    public void Platform_parameters_give_a_32_bit_HVM_caller_no_hypervisor_hole()
    {
        // Xen 4.17's arch_domain_create (xen/arch/x86/domain.c) sets HYPERVISOR_COMPAT_VIRT_START to ~0 for a domain
        // that is not PV, and compat_xen_version (xen/common/compat/kernel.c) answers it as virt_start; a 64-bit caller
        // gets HYPERVISOR_VIRT_START.
        var (machine, d) = Build();
        using var owner = machine;
        var page = new GuestPage();
        Assert.Equal(0, Call(machine, d.Vcpus[0], page, HypercallNumber.XenVersion, (ulong)XenVersionCommand.PlatformParameters, 0, compat: true));
        Assert.Equal(0xFFFF_FFFFu, MemoryMarshal.Read<uint>(page.Bytes));
        Assert.Equal(0, Call(machine, d.Vcpus[0], page, HypercallNumber.XenVersion, (ulong)XenVersionCommand.PlatformParameters, 0));
        Assert.Equal(0xFFFF_8000_0000_0000ul, MemoryMarshal.Read<ulong>(page.Bytes));
    }

    [Fact]
    public void Guest_handle_is_the_handle_the_toolstack_gave_the_domain()
    {
        // Xen 4.17's do_xen_version, XENVER_guest_handle: the domain's handle, the UUID XEN_DOMCTL_createdomain set.
        var (machine, dom0) = BuildDom0();
        using var owner = machine;
        var guid = Guid.NewGuid();
        var other = new Domain(machine, 2, "other", 1, privileged: false, upcall: null) { Handle = guid };
        machine.AddDomain(other);
        other.SetMaxPages(16);
        Assert.Equal(0, other.Populate(0));
        Assert.Equal(0, other.InitialiseBootVcpu(0x1000, 0));
        var page = new GuestPage();
        Assert.Equal(0, Call(machine, other.Vcpus[0], page, HypercallNumber.XenVersion, (ulong)XenVersionCommand.GuestHandle, 0));
        Assert.Equal(guid, MemoryMarshal.Read<Guid>(page.Bytes));
    }

    [Fact]
    public void Pausedomain_stops_at_255_pauses_with_EOVERFLOW()
    {
        // Xen 4.17's _domain_pause_by_systemcontroller (xen/common/domain.c): the toolstack's pause count is limited to
        // 255, past which XEN_DOMCTL_pausedomain is -EOVERFLOW and the count stays.
        var (machine, dom0) = BuildDom0();
        using var owner = machine;
        var other = new Domain(machine, 2, "other", 1, privileged: false, upcall: null);
        machine.AddDomain(other);
        var page = new GuestPage();
        MemoryMarshal.Write(page.Bytes, new XenDomctl { Cmd = ToolsAbi.DomctlPauseDomain, InterfaceVersion = ToolsAbi.DomctlInterfaceVersion, Domain = 2 });
        while (other.PauseCount < 255)
            Assert.Equal(0, Call(machine, dom0.Vcpus[0], page, HypercallNumber.Domctl, 0));
        Assert.Equal(XenErrno.EOVERFLOW.Negated(), Call(machine, dom0.Vcpus[0], page, HypercallNumber.Domctl, 0));
        Assert.Equal(255, other.PauseCount);
    }

    [Fact]
    public void Getdomaininfo_of_a_reserved_domid_is_EINVAL()
    {
        // Xen 4.17's do_domctl, XEN_DOMCTL_getdomaininfo: with no domain of that id, an id at or past
        // DOMID_FIRST_RESERVED (DOMID_SELF included) is -EINVAL; a free id below it finds the next domain up, or -ESRCH.
        var (machine, dom0) = BuildDom0();
        using var owner = machine;
        var page = new GuestPage();
        foreach (ushort domid in new ushort[] { DomainId.Self, 0x7FF5, 0xFFFF })
        {
            MemoryMarshal.Write(page.Bytes, new XenDomctl { Cmd = ToolsAbi.DomctlGetDomainInfo, InterfaceVersion = ToolsAbi.DomctlInterfaceVersion, Domain = domid });
            Assert.Equal(XenErrno.EINVAL.Negated(), Call(machine, dom0.Vcpus[0], page, HypercallNumber.Domctl, 0));
        }

        MemoryMarshal.Write(page.Bytes, new XenDomctl { Cmd = ToolsAbi.DomctlGetDomainInfo, InterfaceVersion = ToolsAbi.DomctlInterfaceVersion, Domain = 5 });
        Assert.Equal(XenErrno.ESRCH.Negated(), Call(machine, dom0.Vcpus[0], page, HypercallNumber.Domctl, 0));
    }

    [Fact]
    public void Console_write_copies_127_byte_chunks_and_stops_at_the_first_bad_one()
    {
        // Xen 4.17's guest_console_write (xen/drivers/char/console.c) copies sizeof(kbuf) - 1 = 127 bytes at a time and
        // answers -EFAULT at the first chunk it cannot read, the chunks before it written.
        var (machine, d) = Build();
        using var owner = machine;
        var buffer = new GuestBuffer(200);
        buffer.Bytes.AsSpan().Fill((byte)'a');
        Assert.Equal(XenErrno.EFAULT.Negated(), Call(machine, d.Vcpus[0], buffer, HypercallNumber.ConsoleIo, (ulong)ConsoleIoCommand.Write, 300, 0));
        Assert.Equal(127, d.Console.Transcript.Count(c => c == 'a'));
    }

    [Fact]
    public void Sched_pin_override_is_the_hardware_domain_s_only()
    {
        // Xen 4.17's do_sched_op, SCHEDOP_pin_override: -EPERM for any domain but the hardware domain, before the
        // argument is read. Domain 0 here has no physical CPU to pin to: not implemented (-ENOSYS).
        var (machine, d) = Build();
        using var owner = machine;
        Assert.Equal(XenErrno.EPERM.Negated(), Call(machine, d.Vcpus[0], new GuestPage(), HypercallNumber.SchedOp, (ulong)SchedOp.PinOverride, 0xdead_0000));
        var (host, dom0) = BuildDom0();
        using var hostOwner = host;
        Assert.Equal(XenErrno.ENOSYS.Negated(), Call(host, dom0.Vcpus[0], new GuestPage(), HypercallNumber.SchedOp, (ulong)SchedOp.PinOverride, 0));
    }

    [Fact]
    public void Every_vcpu_op_checks_the_vcpu_id_first_and_get_physid_is_einval_for_a_vcpu_not_pinned()
    {
        // Xen 4.17's do_vcpu_op (xen/arch/x86/domain.c) looks the vCPU up before the command (-ENOENT), whatever the
        // command; VCPUOP_get_physid answers -EINVAL for a vCPU that is not a pinned hardware-domain vCPU
        // (is_hwdom_pinned_vcpu). set_periodic_timer and send_nmi are not implemented here (-ENOSYS for a real vCPU).
        var (machine, d) = Build();
        using var owner = machine;
        var v = d.Vcpus[0];
        foreach (VcpuOp op in new[] { VcpuOp.SetPeriodicTimer, VcpuOp.SendNmi, VcpuOp.GetPhysid })
            Assert.Equal(XenErrno.ENOENT.Negated(), Call(machine, v, new GuestPage(), HypercallNumber.VcpuOp, (ulong)op, 7));
        Assert.Equal(XenErrno.ENOSYS.Negated(), Call(machine, v, new GuestPage(), HypercallNumber.VcpuOp, (ulong)VcpuOp.SetPeriodicTimer, 0));
        Assert.Equal(XenErrno.ENOSYS.Negated(), Call(machine, v, new GuestPage(), HypercallNumber.VcpuOp, (ulong)VcpuOp.SendNmi, 0));
        Assert.Equal(XenErrno.EINVAL.Negated(), Call(machine, v, new GuestPage(), HypercallNumber.VcpuOp, (ulong)VcpuOp.GetPhysid, 0));
    }
}
