using VmmKit.Hypercall;

namespace VmmKit.ReferenceHypervisor.Hypercalls;

/// <summary>
/// <c>__HYPERVISOR_vcpu_op(cmd, vcpuid, arg)</c> (xen/common/domain.c <c>do_vcpu_op</c>, reached through
/// <c>hvm_vcpu_op</c>): VCPUOP_initialise, VCPUOP_up, VCPUOP_down, VCPUOP_is_up, VCPUOP_register_vcpu_info,
/// VCPUOP_get_runstate_info, VCPUOP_register_runstate_memory_area and VCPUOP_register_vcpu_time_memory_area. A vcpuid
/// the domain does not have is -ENOENT; the other sub-ops are not implemented (-ENOSYS).
/// </summary>
internal static class VcpuOpHypercall
{
    /// <summary>
    /// VCPUOP_initialise for an HVM/PVH vCPU (Xen's <c>arch_initialise_vcpu</c>): reads <c>struct vcpu_hvm_context</c>
    /// (-EFAULT), refuses a vCPU past shared_info's 32 vcpu_info slots that registered none (-EINVAL, first), one that is
    /// already initialised (-EEXIST), also by another vCPU while this call waited for
    /// its slice to end (Xen checks <c>is_initialised</c> under the domain lock), and a context Xen would refuse (-EINVAL),
    /// and leaves the vCPU initialised but down until VCPUOP_up. On the threaded scheduler a caller that an INIT took
    /// down while it waited gets -EAGAIN, the vCPU left as it was (<see cref="VcpuThread.WaitOutOfSlice"/>).
    /// </summary>
    public static long Initialise(ref HypercallCall<VirtualCpu> call)
    {
        if (!TryGetVcpu(ref call, out var vcpu))
            return XenErrno.ENOENT.Negated();
        // common_vcpu_op (Xen 4.17): a vCPU still on dummy_vcpu_info (past shared_info's 32 slots, none registered).
        if (vcpu.Id >= SharedInfo.LegacyMaxVcpus && !vcpu.Time.IsRegistered)
            return XenErrno.EINVAL.Negated();
        if (!call.TryCopyFromGuest(call.Argument(2), out VcpuHvmContext context))
            return XenErrno.EFAULT.Negated();
        if (vcpu.IsInitialised)
            return XenErrno.EEXIST.Negated();
        vcpu.Domain.Machine.InitialiseLooked?.Invoke(call.Caller, vcpu);
        // Threaded scheduler: an INIT may have taken it down while it still ran.
        if (vcpu.Thread is { } thread && !thread.WaitOutOfSlice())
            return XenErrno.EAGAIN.Negated();
        if (vcpu.IsInitialised)
            return XenErrno.EEXIST.Negated();   // another vCPU initialised it meanwhile (a start-up IPI, VCPUOP_initialise)
        long rc = VcpuHvmContextLoader.Load(vcpu, in context);
        if (rc == 0)
            vcpu.IsInitialised = true;
        return rc;
    }

    /// <summary>VCPUOP_up: -EINVAL for a vCPU that is not initialised; otherwise it becomes runnable (0, also when it already was up).</summary>
    public static long Up(ref HypercallCall<VirtualCpu> call)
    {
        if (!TryGetVcpu(ref call, out var vcpu))
            return XenErrno.ENOENT.Negated();
        if (!vcpu.IsInitialised)
            return XenErrno.EINVAL.Negated();
        VcpuLifecycle.Up(vcpu);
        return 0;
    }

    /// <summary>
    /// VCPUOP_down: the vCPU stops being scheduled (at once when it is the caller). When no other vCPU is up, the domain
    /// powers off instead, as Xen's <c>do_vcpu_op</c> does ("Last vcpu going down?"). Returns 0.
    /// </summary>
    public static long Down(ref HypercallCall<VirtualCpu> call)
    {
        if (!TryGetVcpu(ref call, out var vcpu))
            return XenErrno.ENOENT.Negated();
        foreach (var other in vcpu.Domain.Vcpus)
        {
            if (other != vcpu && other.IsUp)
            {
                if (vcpu.IsUp)
                    VcpuLifecycle.Down(vcpu);
                return 0;
            }
        }

        vcpu.Domain.Shutdown(ShutdownReason.Poweroff);
        call.Caller.PendingAction = ExitAction.Stop;
        return 0;
    }

    /// <summary>VCPUOP_is_up: 1 when the vCPU is up, 0 when it is down.</summary>
    public static long IsUp(ref HypercallCall<VirtualCpu> call) =>
        TryGetVcpu(ref call, out var vcpu) ? (vcpu.IsUp ? 1 : 0) : XenErrno.ENOENT.Negated();

    /// <summary>
    /// VCPUOP_register_vcpu_info: reads <c>struct vcpu_register_vcpu_info</c> and moves the vcpu_info there, under the
    /// domain's <see cref="Domain.VcpuInfoLock"/> (Xen's <c>domain_lock</c>): of two vCPUs registering one vcpu_info at
    /// once, one wins and the other gets -EINVAL, so no page reference is taken and then lost.
    /// </summary>
    public static long RegisterVcpuInfo(ref HypercallCall<VirtualCpu> call)
    {
        if (!TryGetVcpu(ref call, out var vcpu))
            return XenErrno.ENOENT.Negated();
        if (!call.TryCopyFromGuest(call.Argument(2), out VcpuRegisterVcpuInfo info))
            return XenErrno.EFAULT.Negated();
        lock (vcpu.Domain.VcpuInfoLock)
            return vcpu.Time.Register(vcpu, call.Caller, info.Mfn, info.Offset, call.Memory);
    }

    /// <summary>VCPUOP_get_runstate_info: writes <c>struct vcpu_runstate_info</c> in the caller's layout.</summary>
    public static long GetRunstateInfo(ref HypercallCall<VirtualCpu> call)
    {
        if (!TryGetVcpu(ref call, out var vcpu))
            return XenErrno.ENOENT.Negated();
        VcpuRunstateInfo r = vcpu.Time.Runstate(vcpu);
        bool ok = call.Abi == HypercallAbi.Native64
            ? call.TryCopyToGuest(call.Argument(2), in r)
            : call.TryCopyToGuest(call.Argument(2), new CompatVcpuRunstateInfo { State = r.State, StateEntryTime = r.StateEntryTime, Time = r.Time });
        return ok ? 0 : XenErrno.EFAULT.Negated();
    }

    /// <summary>
    /// VCPUOP_register_runstate_memory_area: reads the area's guest virtual address (8 bytes, or the 4-byte compat handle
    /// for a 32-bit caller, as Xen's compat_vcpu_op) and returns 0; -EFAULT only when the argument cannot be read.
    /// </summary>
    public static long RegisterRunstateMemoryArea(ref HypercallCall<VirtualCpu> call)
    {
        if (!TryGetVcpu(ref call, out var vcpu))
            return XenErrno.ENOENT.Negated();
        ulong address;
        if (call.Abi == HypercallAbi.Native64)
        {
            if (!call.TryCopyFromGuest(call.Argument(2), out VcpuRegisterRunstateMemoryArea area))
                return XenErrno.EFAULT.Negated();
            address = area.Addr;
        }
        else
        {
            if (!call.TryCopyFromGuest(call.Argument(2), out uint handle))
                return XenErrno.EFAULT.Negated();
            address = handle;
        }

        vcpu.Time.RegisterRunstateArea(vcpu, address, call.Memory);
        return 0;
    }

    /// <summary>
    /// VCPUOP_register_vcpu_time_memory_area (xen/arch/x86/domain.c <c>arch_do_vcpu_op</c>): reads the area's guest virtual
    /// address (<c>struct vcpu_register_time_memory_area</c>: 8 bytes, or a 4-byte compat handle for a 32-bit caller) and
    /// returns 0; -EFAULT only when the argument cannot be read. Any vCPU of the caller's domain may be named.
    /// </summary>
    public static long RegisterVcpuTimeMemoryArea(ref HypercallCall<VirtualCpu> call)
    {
        if (!TryGetVcpu(ref call, out var vcpu))
            return XenErrno.ENOENT.Negated();
        ulong address;
        if (call.Abi == HypercallAbi.Native64)
        {
            if (!call.TryCopyFromGuest(call.Argument(2), out ulong handle))
                return XenErrno.EFAULT.Negated();
            address = handle;
        }
        else
        {
            if (!call.TryCopyFromGuest(call.Argument(2), out uint handle))
                return XenErrno.EFAULT.Negated();
            address = handle;
        }

        vcpu.Time.RegisterTimeMemoryArea(vcpu, address, call.Memory);
        return 0;
    }

    /// <summary>
    /// VCPUOP_set_periodic_timer and VCPUOP_send_nmi: not implemented (-ENOSYS), after Xen 4.17's <c>do_vcpu_op</c> has
    /// looked the vCPU up, as it does for every command (-ENOENT).
    /// </summary>
    public static long NotImplemented(ref HypercallCall<VirtualCpu> call) =>
        TryGetVcpu(ref call, out _) ? XenErrno.ENOSYS.Negated() : XenErrno.ENOENT.Negated();

    /// <summary>
    /// VCPUOP_get_physid: Xen 4.17's <c>do_vcpu_op</c> answers -EINVAL for a vCPU that is not a pinned vCPU of the hardware
    /// domain (<c>is_hwdom_pinned_vcpu</c>), which no vCPU is here; -ENOENT first for a vCPU that does not exist.
    /// </summary>
    public static long GetPhysid(ref HypercallCall<VirtualCpu> call) =>
        TryGetVcpu(ref call, out _) ? XenErrno.EINVAL.Negated() : XenErrno.ENOENT.Negated();

    private static bool TryGetVcpu(ref HypercallCall<VirtualCpu> call, out VirtualCpu vcpu)
    {
        // vcpuid is an unsigned int (domain_vcpu: -ENOENT past max_vcpus).
        uint id = (uint)call.Argument(1);
        var vcpus = call.Caller.Domain.Vcpus;
        vcpu = id < (uint)vcpus.Count ? vcpus[(int)id] : null!;
        return vcpu is not null;
    }
}
