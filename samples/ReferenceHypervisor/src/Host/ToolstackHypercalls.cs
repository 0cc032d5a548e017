using VmmKit.Dom0.Xen.Abi;
using VmmKit.Hypercall;
using VmmKit.ReferenceHypervisor.Hypercalls;

namespace VmmKit.ReferenceHypervisor.Host;

/// <summary>
/// The hypercalls a toolstack makes on other domains, registered over the guest-facing ones: domctl and sysctl,
/// HVMOP_set/get_param, XENMEM_populate_physmap and XENMEM_add_to_physmap (grant-table frames) naming another domain, SCHEDOP_remote_shutdown. A call that names the
/// caller itself goes to the guest-facing handler unchanged; naming another domain needs privilege (Xen's XSM dummy
/// policy: -EPERM for a guest) and a live domain (-ESRCH).
/// </summary>
internal static unsafe class ToolstackHypercalls
{
    /// <summary>Registers the toolstack's hypercalls in <paramref name="d"/>.</summary>
    public static void Register(HypercallDispatcher<VirtualCpu> d)
    {
        d.Register(HypercallNumber.Domctl, &DomctlHypercall.Handle);
        d.Register(HypercallNumber.Sysctl, &SysctlHypercall.Handle);
        d.RegisterSubOp(HypercallNumber.HvmOp, (uint)HvmOp.SetParam, &SetParam);
        d.RegisterSubOp(HypercallNumber.HvmOp, (uint)HvmOp.GetParam, &GetParam);
        d.RegisterSubOp(HypercallNumber.MemoryOp, ToolsAbi.MemPopulatePhysmap, &PopulatePhysmap);
        d.RegisterSubOp(HypercallNumber.MemoryOp, (uint)MemoryOp.AddToPhysmap, &AddToPhysmap);
        d.RegisterSubOp(HypercallNumber.SchedOp, (uint)SchedOp.RemoteShutdown, &RemoteShutdown);
    }

    /// <summary>
    /// Resolves a domid_t naming another domain: 1 when it names the caller (use the guest-facing path), 0 with
    /// <paramref name="target"/> set, or a negated errno.
    /// </summary>
    private static long Other(VirtualCpu caller, ushort domid, out Domain target)
    {
        target = caller.Domain;
        if (domid == DomainId.Self || domid == caller.Domain.Id)
            return 1;
        if (!caller.Domain.IsPrivileged)
            return caller.Domain.Machine.FindDomain(domid) is null ? XenErrno.ESRCH.Negated() : XenErrno.EPERM.Negated();
        if (caller.Domain.Machine.FindDomain(domid) is not { IsDying: false } d)
            return XenErrno.ESRCH.Negated();
        target = d;
        return 0;
    }

    /// <summary>
    /// HVMOP_set_param: the toolstack sets any parameter of another domain (store/console pfn and evtchn, ...), under
    /// hvm_set_param's per-parameter rules (Hypercalls/HvmParamRules.cs).
    /// </summary>
    private static long SetParam(ref HypercallCall<VirtualCpu> call)
    {
        if (!call.TryCopyFromGuest(call.Argument(1), out XenHvmParam p))
            return XenErrno.EFAULT.Negated();
        if (p.Index >= (uint)HvmParam.Count)
            return XenErrno.EINVAL.Negated();   // do_hvm_op: before the domain is looked up (-ESRCH) or XSM (-EPERM)
        long rc = Other(call.Caller, p.Domid, out var target);
        if (rc == 1)
            return HvmOpHypercall.SetParam(ref call);
        if (rc != 0)
            return rc;
        return Hypercalls.HvmParamRules.Set(call.Caller, target, (HvmParam)p.Index, p.Value);
    }

    /// <summary>
    /// XENMEM_add_to_physmap naming another domain: only <c>XENMAPSPACE_grant_table</c>, which the toolstack uses to seed
    /// the reserved grants (libxc's <c>xc_dom_gnttab_hvm_seed</c> places frame 0 at a scratch gfn above the domain's RAM,
    /// foreign-maps it and writes the entries). The slot must be empty or hold a table frame (-EBUSY otherwise: the domain's
    /// RAM is never displaced by its toolstack here); other spaces are -ENOSYS. The frame stays at the scratch gfn until
    /// the guest places it itself or the toolstack removes it (XENMEM_remove_from_physmap, as libxc does after seeding).
    /// </summary>
    private static long AddToPhysmap(ref HypercallCall<VirtualCpu> call)
    {
        // A 32-bit caller, a continuation or a bad pointer: the guest-facing handler answers (Dom0 is 64-bit).
        // So does an unprivileged caller: do_memory_op's order (gmfn_foreign, the domain, dev_mmio, XSM) is there.
        if (call.Abi != HypercallAbi.Native64 || call.Argument(0) >> 6 != 0 || !call.Caller.Domain.IsPrivileged
            || !call.TryCopyFromGuest(call.Argument(1), out XenAddToPhysmap x) || x.Space == (uint)XenMapSpace.GmfnForeign)
            return MemoryOpHypercall.AddToPhysmap(ref call);
        long rc = Other(call.Caller, x.Domid, out var target);
        if (rc == 1)
            return MemoryOpHypercall.AddToPhysmap(ref call);
        if (rc != 0)
            return rc;
        // xatp_permission_check: dev_mmio is the hardware domain's on itself (-EACCES); xenmem_add_to_physmap_one: an
        // unknown space -EINVAL; gmfn and gmfn_range on another domain are not implemented here (-ENOSYS).
        if (x.Space == (uint)XenMapSpace.DevMmio)
            return XenErrno.EACCES.Negated();
        if (x.Space > (uint)XenMapSpace.DevMmio)
            return XenErrno.EINVAL.Negated();
        if (x.Space != (uint)XenMapSpace.GrantTable)
            return XenErrno.ENOSYS.Negated();
        var gfn = new VmmKit.Ept.GuestFrameNumber(x.Gpfn);
        using (target.PhysmapLock.Write())   // the slot looked at and filled in one step (Domain.PhysmapLock)
        {
            if (target.Ept.TryLookup(gfn, out var frame, out _) && !target.IsGrantTableFrame(frame))
                return XenErrno.EBUSY.Negated();

            rc = target.Machine.Grants.AddToPhysmap(target.Grants, x.Idx, gfn);
            MemoryOpHypercall.FlushEpt(target);
            return rc;
        }
    }

    /// <summary>HVMOP_get_param on another domain.</summary>
    private static long GetParam(ref HypercallCall<VirtualCpu> call)
    {
        ulong arg = call.Argument(1);
        if (!call.TryCopyFromGuest(arg, out XenHvmParam p))
            return XenErrno.EFAULT.Negated();
        if (p.Index >= (uint)HvmParam.Count)
            return XenErrno.EINVAL.Negated();   // do_hvm_op: before the domain is looked up (-ESRCH) or XSM (-EPERM)
        long rc = Other(call.Caller, p.Domid, out var target);
        if (rc == 1)
            return HvmOpHypercall.GetParam(ref call);
        if (rc != 0)
            return rc;
        rc = Hypercalls.HvmParamRules.Get(call.Caller, target, (HvmParam)p.Index, out p.Value);
        if (rc != 0)
            return rc;
        return call.TryCopyToGuest(arg, in p) ? 0 : XenErrno.EFAULT.Negated();
    }

    /// <summary>
    /// XENMEM_populate_physmap for another domain, 4 KiB extents (extent_order 0; larger orders are -EINVAL here): each
    /// gfn of extent_start from start_extent on gets a fresh zeroed frame. Returns the number of extents done, as Xen's
    /// do_memory_op does for every refusal too (never an errno): an unreadable argument, nr_extents too large to encode
    /// a continuation, start_extent at or past nr_extents, a missing domain and a guest naming another domain (XSM) all
    /// return start_extent; fewer than nr_extents means the next one failed. A guest populating its own memory is not
    /// offered (-ENOSYS).
    /// </summary>
    private static long PopulatePhysmap(ref HypercallCall<VirtualCpu> call)
    {
        ulong start = call.Argument(0) >> 6;   // MEMOP_EXTENT_SHIFT
        if (!call.TryCopyFromGuest(call.Argument(1), out XenMemoryReservation r))
            return (long)start;
        if (r.NrExtents > (uint.MaxValue >> 6) || start >= r.NrExtents)
            return (long)start;
        long rc = Other(call.Caller, r.Domid, out var target);
        if (rc == 1)
            return XenErrno.ENOSYS.Negated();
        if (rc != 0)
            return (long)start;   // rcu_lock_domain_by_any_id, xsm_memory_adjust_reservation
        if (r.ExtentOrder != 0)
            return XenErrno.EINVAL.Negated();
        ulong done = start;
        for (; done < r.NrExtents; done++)
        {
            if (!call.TryCopyFromGuest(r.ExtentStart + (done * 8), out ulong gfn))
                break;
            if (gfn >= 1ul << 34 || target.Populate(gfn) != 0)
                break;
        }

        MemoryOpHypercall.FlushEpt(target);
        return (long)done;
    }

    /// <summary>SCHEDOP_remote_shutdown: the toolstack shuts another domain down with a SHUTDOWN_* reason.</summary>
    private static long RemoteShutdown(ref HypercallCall<VirtualCpu> call)
    {
        if (!call.TryCopyFromGuest(call.Argument(1), out SchedRemoteShutdown s))
            return XenErrno.EFAULT.Negated();
        // do_sched_op: rcu_lock_domain_by_id (-ESRCH) before xsm_schedop_shutdown (-EPERM for a guest).
        if (call.Caller.Domain.Machine.FindDomain(s.DomainId) is not { IsDying: false } target)
            return XenErrno.ESRCH.Negated();
        if (!call.Caller.Domain.IsPrivileged)
            return XenErrno.EPERM.Negated();
        if (target == call.Caller.Domain)
            return XenErrno.ESRCH.Negated();
        target.ShutdownBy((ShutdownReason)(byte)s.Reason);   // domain_shutdown takes a u8, not checked (Xen 4.17)
        return 0;
    }
}
