using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace VmmKit.Hypercall;

/// <summary>
/// Sub-operations of <c>__HYPERVISOR_vcpu_op(cmd, vcpuid, arg)</c> (<c>VCPUOP_*</c>, xen/vcpu.h). An HVM or PVH
/// guest may use only some of them (xen/arch/x86/hvm/hypercall.c, <c>hvm_vcpu_op</c>); the rest are -ENOSYS.
/// </summary>
public enum VcpuOp : uint
{
    /// <summary><c>VCPUOP_initialise</c>: set the initial state of a vCPU that is down.</summary>
    Initialise = 0,
    /// <summary><c>VCPUOP_up</c>: start an initialised vCPU.</summary>
    Up = 1,
    /// <summary><c>VCPUOP_down</c>: stop a vCPU.</summary>
    Down = 2,
    /// <summary><c>VCPUOP_is_up</c>: returns 1 when the vCPU is up.</summary>
    IsUp = 3,
    /// <summary><c>VCPUOP_get_runstate_info</c>: arg is <see cref="VcpuRunstateInfo"/> (<see cref="CompatVcpuRunstateInfo"/> for 32-bit callers).</summary>
    GetRunstateInfo = 4,
    /// <summary><c>VCPUOP_register_runstate_memory_area</c>.</summary>
    RegisterRunstateMemoryArea = 5,
    /// <summary><c>VCPUOP_set_periodic_timer</c>.</summary>
    SetPeriodicTimer = 6,
    /// <summary><c>VCPUOP_stop_periodic_timer</c>.</summary>
    StopPeriodicTimer = 7,
    /// <summary><c>VCPUOP_set_singleshot_timer</c>.</summary>
    SetSingleshotTimer = 8,
    /// <summary><c>VCPUOP_stop_singleshot_timer</c>.</summary>
    StopSingleshotTimer = 9,
    /// <summary><c>VCPUOP_register_vcpu_info</c>: arg is <see cref="VcpuRegisterVcpuInfo"/>; moves the vCPU's <see cref="VcpuInfo"/> into a guest page.</summary>
    RegisterVcpuInfo = 10,
    /// <summary><c>VCPUOP_send_nmi</c>.</summary>
    SendNmi = 11,
    /// <summary><c>VCPUOP_get_physid</c>.</summary>
    GetPhysid = 12,
    /// <summary><c>VCPUOP_register_vcpu_time_memory_area</c>.</summary>
    RegisterVcpuTimeMemoryArea = 13,
}

/// <summary>States of <see cref="VcpuRunstateInfo.State"/> (<c>RUNSTATE_*</c>, xen/vcpu.h).</summary>
public enum RunstateState
{
    /// <summary><c>RUNSTATE_running</c>: running on a physical CPU.</summary>
    Running = 0,
    /// <summary><c>RUNSTATE_runnable</c>: runnable, not scheduled.</summary>
    Runnable = 1,
    /// <summary><c>RUNSTATE_blocked</c>: waiting for an event.</summary>
    Blocked = 2,
    /// <summary><c>RUNSTATE_offline</c>: neither runnable nor blocked (down, paused).</summary>
    Offline = 3,
}

/// <summary><c>struct vcpu_register_vcpu_info</c> (xen/vcpu.h), 16 bytes in both ABIs.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct VcpuRegisterVcpuInfo
{
    /// <summary><c>mfn</c>: for a translated (HVM/PVH) guest, the guest frame of the page that will hold the vcpu_info.</summary>
    public ulong Mfn;
    /// <summary><c>offset</c>: byte offset of the vcpu_info in that page; it must fit in the page.</summary>
    public uint Offset;
    /// <summary><c>rsvd</c>: unused.</summary>
    public uint Reserved;
}

/// <summary>
/// <c>struct vcpu_register_runstate_memory_area</c> (xen/vcpu.h), 8 bytes in both ABIs: the guest virtual address of a
/// <see cref="VcpuRunstateInfo"/> the hypervisor rewrites each time the vCPU is scheduled. A 32-bit caller's handle is
/// the low 4 bytes (Xen's compat code reads only those).
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public struct VcpuRegisterRunstateMemoryArea
{
    /// <summary><c>addr</c> (<c>union { h; v; p; }</c>): the guest virtual address.</summary>
    public ulong Addr;
}

/// <summary><c>struct vcpu_runstate_info</c> (xen/vcpu.h), x86-64 layout: 48 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct VcpuRunstateInfo
{
    /// <summary><c>state</c>: a <see cref="RunstateState"/>.</summary>
    public int State;
    /// <summary><c>state_entry_time</c>: system time (ns) the current state was entered.</summary>
    public ulong StateEntryTime;
    /// <summary><c>time[4]</c>: nanoseconds spent in each <see cref="RunstateState"/>.</summary>
    public RunstateTimes Time;
}

/// <summary><c>struct vcpu_runstate_info</c> as a 32-bit guest lays it out (64-bit members 4-byte aligned): 44 bytes.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 4)]
public struct CompatVcpuRunstateInfo
{
    /// <summary><c>state</c>.</summary>
    public int State;
    /// <summary><c>state_entry_time</c>.</summary>
    public ulong StateEntryTime;
    /// <summary><c>time[4]</c>.</summary>
    public RunstateTimes Time;
}

/// <summary><c>uint64_t time[4]</c>, indexed by <see cref="RunstateState"/>.</summary>
[InlineArray(4)]
public struct RunstateTimes
{
    private ulong _element0;
}
