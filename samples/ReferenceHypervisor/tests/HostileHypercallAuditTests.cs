using VmmKit.Dom0.Xen.Abi;
using VmmKit.Hypercall;
using VmmKit.Vmx;

using static VmmKit.ReferenceHypervisor.Tests.HypercallMachine;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// An audit of the hypercall surface against a hostile guest: each test dispatches one call as a guest would make it
/// (the VMCALL's registers, through <see cref="Machine.Hypercalls"/>) and checks the answer and the state against what
/// Xen does for the same input, citing the rule's source.
/// </summary>
public class HostileHypercallAuditTests
{
    [Fact]
    public void Set_timer_op_with_a_deadline_already_passed_fires_at_once_not_100_ms_later()
    {
        // Xen's do_set_timer_op (xen/common/sched/core.c): offset = timeout - NOW() is signed; only a timeout wrapped
        // negative or more than 2^50 ns *ahead* (offset > 0) becomes NOW() + 100 ms. A deadline just passed (offset < 0)
        // is set as it is, so the timer fires at once: a guest that computed its deadline a little late is not delayed.
        var (machine, d) = Build();
        using var owner = machine;
        var v = d.Vcpus[0];
        Assert.True(GuestTime.TryAdvance(v, GuestTime.ToTicks(1_000_000_000)));   // the vCPU's clock at about 1 s
        ulong now = GuestTime.SystemTime(v);
        ulong past = now - 1_000_000;

        Assert.Equal(0, Call(machine, v, new GuestPage(), HypercallNumber.SetTimerOp, past));
        Assert.Equal(past, v.Timers.Singleshot);

        // The workaround itself stays: 2^50 ns ahead, or wrapped negative, is now + 100 ms.
        foreach (ulong huge in new[] { now + (1ul << 50), 1ul << 63 })
        {
            Assert.Equal(0, Call(machine, v, new GuestPage(), HypercallNumber.SetTimerOp, huge));
            Assert.Equal(GuestTime.SystemTime(v) + 100_000_000, v.Timers.Singleshot);
        }
    }

    [Fact]
    public void Two_vcpus_registering_one_vcpu_info_at_once_register_it_once_and_take_one_page()
    {
        // Xen's do_vcpu_op holds domain_lock(d) across map_vcpu_info (xen/common/domain.c), so its "registered once"
        // check and the registration are one step: of two vCPUs registering the vcpu_info of the same offline vCPU at
        // once, one wins and the other gets -EINVAL. Without that, both passed the check, the later one replaced the
        // earlier's page, and the earlier page's reference (held until the domain's teardown) was never dropped: a
        // frame lost to the host for good.
        var (machine, d) = Build(vcpus: 3);
        using var owner = machine;
        const ulong FirstGfn = 0x300, SecondGfn = 0x301;
        long second = long.MinValue;
        Thread? racer = null;
        machine.VcpuInfoLooked = (caller, target) =>
        {
            if (racer is not null)
                return;
            // vCPU 1 registers vCPU 2's vcpu_info elsewhere while vCPU 0's call has looked and not yet registered.
            racer = new Thread(() => second = RegisterVcpuInfo(machine, d.Vcpus[1], 2, SecondGfn));
            racer.Start();
            racer.Join(TimeSpan.FromMilliseconds(300));   // with the domain's lock held, it waits for this call
        };

        long first = RegisterVcpuInfo(machine, d.Vcpus[0], 2, FirstGfn);
        Assert.True(racer!.Join(TimeSpan.FromSeconds(10)), "the second registration did not end");
        Assert.Equal(0, first);
        Assert.Equal(XenErrno.EINVAL.Negated(), second);

        // Only the winner's page is held: the loser's frame goes back to the host when the guest frees it.
        Assert.True(d.Ept.TryLookup(new VmmKit.Ept.GuestFrameNumber(SecondGfn), out var loser, out _));
        Assert.Equal(0, machine.Frames.ReferenceCount(loser));
        Assert.True(d.Ept.TryLookup(new VmmKit.Ept.GuestFrameNumber(FirstGfn), out var winner, out _));
        Assert.Equal(1, machine.Frames.ReferenceCount(winner));
    }

    [Fact]
    public void Naming_another_domain_with_a_bad_hvm_param_index_or_a_missing_domain_to_shut_down_answers_as_xen()
    {
        // do_hvm_op (xen/arch/x86/hvm/hvm.c, hvmop_set_param/hvmop_get_param) checks a.index >= HVM_NR_PARAMS (-EINVAL)
        // before it looks the domain up (-ESRCH) or asks XSM (-EPERM); SCHEDOP_remote_shutdown (xen/common/sched/core.c)
        // looks the domain up (-ESRCH) before xsm_schedop_shutdown (-EPERM for a guest).
        var (machine, guest, other) = ToolstackHypercallTests.Setup();
        using var owner = machine;
        var memory = new GuestPage();
        foreach (ushort domid in new ushort[] { 2, 9 })
        {
            foreach (HvmOp op in new[] { HvmOp.SetParam, HvmOp.GetParam })
            {
                System.Runtime.InteropServices.MemoryMarshal.Write(memory.Bytes, new XenHvmParam { Domid = domid, Index = (uint)HvmParam.Count });
                Assert.Equal(XenErrno.EINVAL.Negated(), Call(machine, guest, memory, HypercallNumber.HvmOp, (ulong)op));
            }
        }

        System.Runtime.InteropServices.MemoryMarshal.Write(memory.Bytes, new SchedRemoteShutdown { DomainId = 9 });
        Assert.Equal(XenErrno.ESRCH.Negated(), Call(machine, guest, memory, HypercallNumber.SchedOp, (ulong)SchedOp.RemoteShutdown));
        System.Runtime.InteropServices.MemoryMarshal.Write(memory.Bytes, new SchedRemoteShutdown { DomainId = 2 });
        Assert.Equal(XenErrno.EPERM.Negated(), Call(machine, guest, memory, HypercallNumber.SchedOp, (ulong)SchedOp.RemoteShutdown));
        Assert.False(other.IsShutdown);
    }

    [Fact]
    public void Xen_version_refuses_a_feature_submap_past_0_and_a_pagesize_argument()
    {
        // do_xen_version (xen/common/kernel.c): XENVER_get_features knows only submap_idx 0 (-EINVAL for any other, the
        // guest's structure left as it was), and XENVER_pagesize takes no argument (-EINVAL for a non-null one).
        var (machine, d) = Build();
        using var owner = machine;
        var v = d.Vcpus[0];
        var page = new GuestPage();
        System.Runtime.InteropServices.MemoryMarshal.Write(page.Bytes, new XenFeatureInfo { SubmapIdx = 1, Submap = 0xDEAD });
        Assert.Equal(XenErrno.EINVAL.Negated(), Call(machine, v, page, HypercallNumber.XenVersion, (ulong)XenVersionCommand.GetFeatures));
        Assert.Equal(0xDEADu, System.Runtime.InteropServices.MemoryMarshal.Read<XenFeatureInfo>(page.Bytes).Submap);

        System.Runtime.InteropServices.MemoryMarshal.Write(page.Bytes, new XenFeatureInfo { SubmapIdx = 0 });
        Assert.Equal(0, Call(machine, v, page, HypercallNumber.XenVersion, (ulong)XenVersionCommand.GetFeatures));
        Assert.NotEqual(0u, System.Runtime.InteropServices.MemoryMarshal.Read<XenFeatureInfo>(page.Bytes).Submap);

        Assert.Equal(4096, Call(machine, v, page, HypercallNumber.XenVersion, (ulong)XenVersionCommand.Pagesize, 0));
        Assert.Equal(XenErrno.EINVAL.Negated(), Call(machine, v, page, HypercallNumber.XenVersion, (ulong)XenVersionCommand.Pagesize, 0x100));
    }

    [Fact]
    public void A_guest_faulting_on_unknown_msrs_in_a_loop_cannot_grow_the_host_log_without_bound()
    {
        // An unknown RDMSR/WRMSR raises #GP(0) in the guest, which may catch it and try again at once. Xen's message for
        // it (gdprintk in vmx_msr_read_intercept/vmx_msr_write_intercept, xen/arch/x86/hvm/vmx/vmx.c) is a guest
        // message, rate-limited (XENLOG_GUEST, printk_ratelimit in xen/drivers/char/console.c): a guest cannot fill the
        // host's log. One line per distinct MSR, up to a bound, then one line saying the rest go unlogged.
        var log = new List<string>();
        var (machine, d) = Build();
        using var owner = machine;
        machine.Logger = log.Add;
        var v = d.Vcpus[0];
        for (uint i = 0; i < 10_000; i++)
        {
            v.Registers.Rcx = 0x4000_1000 + (i % 200);   // 200 MSRs nobody implements, over and over
            Assert.Equal(ExitAction.Resume, (i & 1) == 0 ? MsrExit.HandleRead(v, default) : MsrExit.HandleWrite(v, default));
        }

        Assert.InRange(log.Count, 1, 2 * (MsrExit.MaxLoggedFaults + 1));
        Assert.Contains(log, l => l.Contains("RDMSR 0x40001000 -> #GP", StringComparison.Ordinal));
    }

    [Fact]
    public void Sched_poll_returns_at_once_when_an_upcall_the_guest_can_take_is_already_pending()
    {
        // do_poll (xen/common/sched/core.c) marks the vCPU blocked, then returns 0 at once when
        // local_events_need_delivery(): for an HVM vCPU (hvm_local_events_need_delivery, xen/arch/x86/hvm/irq.c) an
        // upcall on the callback vector, or a local APIC interrupt, pending that the guest can take now (RFLAGS.IF set,
        // no STI or MOV SS shadow: vmx_interrupt_blocked). An upcall marked pending in the vCPU's slice just before its
        // VMCALL (by a sibling on another thread) was otherwise left waiting until a polled port or the timeout: the
        // sibling's kick is cleared when the slice ends, and the wake-up looked only at the polled ports.
        var (machine, d) = Build();
        using var owner = machine;
        var v = d.Vcpus[0];
        d.SetCallbackVia((2ul << 56) | 0xF3);                  // HVM_PARAM_CALLBACK_IRQ: vector 0xF3
        machine.Memory.GetFrame(d.SharedInfoFrame)[0] = 1;    // vcpu_info[0].evtchn_upcall_pending
        v.Vmcs.Write(VmcsField.GuestInterruptibilityState, 0);
        v.Vmcs.Write(VmcsField.GuestRflags, 0x202);             // IF = 1
        var page = new GuestPage();
        System.Runtime.InteropServices.MemoryMarshal.Write(page.Bytes, new SchedPoll { Ports = 0x100, NrPorts = 1 });
        // An allocated port not pending (a free one is -EINVAL: Xen 4.17's evtchn_port_poll, Xen417HypercallTests).
        var unbound = new VmmKit.EventChannel.EvtchnAllocUnbound { Dom = DomainId.Self, RemoteDom = 0 };
        Assert.Equal(0, machine.Events.AllocUnbound(d.Events, ref unbound));
        System.Runtime.InteropServices.MemoryMarshal.Write(page.Bytes.AsSpan(0x100), unbound.Port);

        Assert.Equal(0, Call(machine, v, page, HypercallNumber.SchedOp, (ulong)SchedOp.Poll));
        Assert.False(v.IsBlocked);
        Assert.False(v.Timers.Polling);

        // With interrupts off the upcall cannot be taken: the vCPU polls, as under Xen.
        v.Vmcs.Write(VmcsField.GuestRflags, 0x2);
        Assert.Equal(0, Call(machine, v, page, HypercallNumber.SchedOp, (ulong)SchedOp.Poll));
        Assert.True(v.IsBlocked);
        Assert.True(v.Timers.Polling);
    }

    [Fact]
    public void Populate_physmap_refused_answers_the_extents_done_never_an_errno()
    {
        // XENMEM_populate_physmap, like increase/decrease_reservation, returns the number of extents done (xen/common/
        // memory.c, do_memory_op): an unreadable argument, nr_extents too large to encode a continuation, start_extent
        // at or past nr_extents, a domain that does not exist and XSM's refusal (xsm_memory_adjust_reservation, a guest
        // naming another domain) all return start_extent, never a negative errno.
        var (machine, guest, other) = ToolstackHypercallTests.Setup();
        using var owner = machine;
        var memory = new GuestPage();
        foreach (ushort domid in new ushort[] { 2, 9 })
        {
            System.Runtime.InteropServices.MemoryMarshal.Write(memory.Bytes, new XenMemoryReservation { ExtentStart = 64, NrExtents = 1, Domid = domid });
            Assert.Equal(0, Call(machine, guest, memory, HypercallNumber.MemoryOp, ToolsAbi.MemPopulatePhysmap));
            Assert.Equal(3, Call(machine, guest, memory, HypercallNumber.MemoryOp, ToolsAbi.MemPopulatePhysmap | (3 << 6)));
        }

        System.Runtime.InteropServices.MemoryMarshal.Write(memory.Bytes, new XenMemoryReservation { ExtentStart = 64, NrExtents = 1ul << 40, Domid = 2 });
        Assert.Equal(0, Call(machine, guest, memory, HypercallNumber.MemoryOp, ToolsAbi.MemPopulatePhysmap));
        Assert.Equal(0, Call(machine, guest, memory, HypercallNumber.MemoryOp, ToolsAbi.MemPopulatePhysmap, 1ul << 40));
        Assert.Equal(0ul, other.PopulatedPages);
    }

    /// <summary>VCPUOP_register_vcpu_info(<paramref name="vcpuid"/>) from <paramref name="caller"/>: the vcpu_info at offset 0 of <paramref name="gfn"/>.</summary>
    private static long RegisterVcpuInfo(Machine machine, VirtualCpu caller, uint vcpuid, ulong gfn)
    {
        var page = new GuestPage();
        System.Runtime.InteropServices.MemoryMarshal.Write(page.Bytes, new VcpuRegisterVcpuInfo { Mfn = gfn });
        return Call(machine, caller, page, HypercallNumber.VcpuOp, (ulong)VcpuOp.RegisterVcpuInfo, vcpuid, 0);
    }
}
