using VmmKit.EventChannel;
using VmmKit.GrantTable;
using VmmKit.Hypercall;

namespace VmmKit.ReferenceHypervisor.Hypercalls;

/// <summary>
/// The hypercalls this hypervisor implements, registered per sub-operation with the dispatcher of
/// VmmKit.Hypercall. Every other number or sub-operation returns -ENOSYS (the dispatcher's default).
/// </summary>
internal static unsafe class HypercallTable
{
    /// <summary>
    /// Creates a dispatcher with every handler of this folder registered, and the event-channel and grant-table
    /// hypercalls of VmmKit.EventChannel and VmmKit.GrantTable over <paramref name="machine"/>'s state.
    /// </summary>
    public static HypercallDispatcher<VirtualCpu> Create(Machine machine)
    {
        // __HYPERVISOR_multicall is the dispatcher's own (xen/common/multicall.c): each entry through this table.
        // hypercall_preempt_check: a long batch gives the processor back and is continued (HypercallPreemption).
        var d = new HypercallDispatcher<VirtualCpu> { PreemptCheck = HypercallPreemption.Check };

        for (uint op = (uint)XenVersionCommand.Version; op <= (uint)XenVersionCommand.BuildId; op++)
            d.RegisterSubOp(HypercallNumber.XenVersion, op, &XenVersionHypercall.Handle);

        d.Register(HypercallNumber.ConsoleIo, &ConsoleIoHypercall.Handle);   // xsm_console_io before the command

        d.RegisterSubOp(HypercallNumber.SchedOp, (uint)SchedOp.Yield, &SchedOpHypercall.Yield);
        d.RegisterSubOp(HypercallNumber.SchedOp, (uint)SchedOp.Block, &SchedOpHypercall.Block);
        d.RegisterSubOp(HypercallNumber.SchedOp, (uint)SchedOp.Poll, &SchedOpHypercall.Poll);
        d.Register(HypercallNumber.SetTimerOp, &TimerHypercalls.SetTimerOp);
        d.RegisterSubOp(HypercallNumber.SchedOp, (uint)SchedOp.Shutdown, &SchedOpHypercall.Shutdown);
        d.RegisterSubOp(HypercallNumber.SchedOp, (uint)SchedOp.PinOverride, &SchedOpHypercall.PinOverride);

        d.RegisterSubOp(HypercallNumber.HvmOp, (uint)HvmOp.SetParam, &HvmOpHypercall.SetParam);
        d.RegisterSubOp(HypercallNumber.HvmOp, (uint)HvmOp.GetParam, &HvmOpHypercall.GetParam);
        d.RegisterSubOp(HypercallNumber.HvmOp, (uint)HvmOp.PagetableDying, &PagetableDyingHypercall.Handle);
        d.Register(HypercallNumber.VmAssist, &VmAssistHypercall.Handle);

        d.RegisterSubOp(HypercallNumber.VcpuOp, (uint)VcpuOp.Initialise, &VcpuOpHypercall.Initialise);
        d.RegisterSubOp(HypercallNumber.VcpuOp, (uint)VcpuOp.Up, &VcpuOpHypercall.Up);
        d.RegisterSubOp(HypercallNumber.VcpuOp, (uint)VcpuOp.Down, &VcpuOpHypercall.Down);
        d.RegisterSubOp(HypercallNumber.VcpuOp, (uint)VcpuOp.IsUp, &VcpuOpHypercall.IsUp);
        d.RegisterSubOp(HypercallNumber.VcpuOp, (uint)VcpuOp.RegisterVcpuInfo, &VcpuOpHypercall.RegisterVcpuInfo);
        d.RegisterSubOp(HypercallNumber.VcpuOp, (uint)VcpuOp.GetRunstateInfo, &VcpuOpHypercall.GetRunstateInfo);
        d.RegisterSubOp(HypercallNumber.VcpuOp, (uint)VcpuOp.RegisterRunstateMemoryArea, &VcpuOpHypercall.RegisterRunstateMemoryArea);
        d.RegisterSubOp(HypercallNumber.VcpuOp, (uint)VcpuOp.RegisterVcpuTimeMemoryArea, &VcpuOpHypercall.RegisterVcpuTimeMemoryArea);
        d.RegisterSubOp(HypercallNumber.VcpuOp, (uint)VcpuOp.SetSingleshotTimer, &TimerHypercalls.SetSingleshot);
        d.RegisterSubOp(HypercallNumber.VcpuOp, (uint)VcpuOp.StopSingleshotTimer, &TimerHypercalls.StopSingleshot);
        d.RegisterSubOp(HypercallNumber.VcpuOp, (uint)VcpuOp.StopPeriodicTimer, &TimerHypercalls.StopPeriodic);
        d.RegisterSubOp(HypercallNumber.VcpuOp, (uint)VcpuOp.SetPeriodicTimer, &VcpuOpHypercall.NotImplemented);
        d.RegisterSubOp(HypercallNumber.VcpuOp, (uint)VcpuOp.SendNmi, &VcpuOpHypercall.NotImplemented);
        d.RegisterSubOp(HypercallNumber.VcpuOp, (uint)VcpuOp.GetPhysid, &VcpuOpHypercall.GetPhysid);

        d.RegisterSubOp(HypercallNumber.MemoryOp, (uint)MemoryOp.MaximumRamPage, &MemoryOpHypercall.MaximumRamPage);
        d.RegisterSubOp(HypercallNumber.MemoryOp, (uint)MemoryOp.CurrentReservation, &MemoryOpHypercall.CurrentReservation);
        d.RegisterSubOp(HypercallNumber.MemoryOp, (uint)MemoryOp.AddToPhysmap, &MemoryOpHypercall.AddToPhysmap);
        d.RegisterSubOp(HypercallNumber.MemoryOp, XenRemoveFromPhysmap.SubOp, &MemoryOpHypercall.RemoveFromPhysmap);
        d.RegisterSubOp(HypercallNumber.MemoryOp, (uint)MemoryOp.MemoryMap, &MemoryOpHypercall.MemoryMap);
        d.RegisterSubOp(HypercallNumber.MemoryOp, (uint)MemoryOp.GetVnumainfo, &MemoryOpHypercall.GetVnumaInfo);

        var callers = new DomainCallers();
        new EventChannelHypercalls<VirtualCpu>(machine.Events, callers).Register(d);
        d.RegisterSubOp(HypercallNumber.EventChannelOp, (uint)EventChannelOp.Send, &EventPollers.Send);   // + evtchn_check_pollers
        // The grant tables flush the vCPUs themselves (Machine's FlushTranslations hook) when a call changes an EPT
        // entry: a map over a present page, an unmap, v2 -> v1 status frames. A copy changes none and flushes nothing.
        // Every command holds the caller's PhysmapLock, copy to read, the others to write (LockedGrantTableOp).
        var grants = new GrantTableHypercalls<VirtualCpu>(machine.Grants, callers);
        d.Register(HypercallNumber.GrantTableOp, (ref HypercallCall<VirtualCpu> call) => LockedGrantTableOp(grants, ref call));
        Host.ToolstackHypercalls.Register(d);   // domctl, sysctl and the calls naming another domain (src/Host)
        return d;
    }

    /// <summary>
    /// <c>grant_table_op</c> through VmmKit.GrantTable. Every command but GNTTABOP_copy holds the caller's
    /// <see cref="Domain.PhysmapLock"/> to write:
    /// <list type="bullet">
    /// <item>map, unmap and set_version (the status frames leave the physmap) change the caller's EPT, as Xen changes the
    /// p2m under the p2m lock (create_grant_p2m_mapping and replace_grant_p2m_mapping through p2m_add_page and
    /// p2m_remove_page, xen/arch/x86/mm.c and mm/p2m.c): a XENMEM_add_to_physmap or remove_from_physmap of another vCPU
    /// that looked at a slot then changes that slot, never a grant mapping placed or removed in between (whose frame, a
    /// domain's own page granted to itself, it would otherwise free while the domain's RAM slot still maps it);</item>
    /// <item>each command writes its results through a host pointer it translated from a guest address: with the lock
    /// held, no remove_from_physmap of another vCPU frees that page in between (Xen's copy_to_guest holds a page
    /// reference across the write).</item>
    /// </list>
    /// GNTTABOP_copy changes no EPT: it holds the lock to read, so copies by several vCPUs of a domain run side by side
    /// while no page of its operations is removed and freed between their translation and their access (a copy word
    /// the package holds covers only the operations that follow a claim, not the first read of a call). A vCPU's exit
    /// handling already holds the lock to read (<see cref="VirtualCpu.RunSlice"/>): the write lets that read go first
    /// (<see cref="PhysmapLock.Write"/>), and these holds also cover a call the host dispatches outside a slice.
    /// </summary>
    private static long LockedGrantTableOp(GrantTableHypercalls<VirtualCpu> grants, ref HypercallCall<VirtualCpu> call)
    {
        PhysmapLock physmap = call.Caller.Domain.PhysmapLock;
        if ((VmmKit.GrantTable.GrantTableOp)(uint)call.Argument(0) == VmmKit.GrantTable.GrantTableOp.Copy)
        {
            using (physmap.Read())
                return grants.Handle(ref call);
        }

        using (physmap.Write())
            return grants.Handle(ref call);
    }

    /// <summary>Resolves a domid_t argument: DOMID_SELF or the caller's own id is the caller; anything else is refused.</summary>
    public static long CheckSelf(VirtualCpu caller, ushort domid)
    {
        if (domid == DomainId.Self || domid == caller.Domain.Id)
            return 0;
        // Another domain: Xen's XSM refuses a non-privileged caller (-EPERM) and a missing domain is -ESRCH.
        return caller.Domain.Machine.Domains.Any(d => d.Id == domid) ? XenErrno.EPERM.Negated() : XenErrno.ESRCH.Negated();
    }
}
