using System.Runtime.InteropServices;

namespace VmmKit.Hypercall;

/// <summary>Sub-operations of <c>__HYPERVISOR_sched_op(cmd, arg)</c> (<c>SCHEDOP_*</c>, xen/sched.h).</summary>
public enum SchedOp : uint
{
    /// <summary><c>SCHEDOP_yield</c>: give up the CPU voluntarily; arg is NULL.</summary>
    Yield = 0,
    /// <summary><c>SCHEDOP_block</c>: block until an event is pending (re-enables event delivery); arg is NULL.</summary>
    Block = 1,
    /// <summary><c>SCHEDOP_shutdown</c>: stop the domain; arg is <see cref="SchedShutdown"/>.</summary>
    Shutdown = 2,
    /// <summary><c>SCHEDOP_poll</c>: wait for one of a set of event channels; arg is <see cref="SchedPoll"/> (<see cref="CompatSchedPoll"/> for 32-bit callers).</summary>
    Poll = 3,
    /// <summary><c>SCHEDOP_remote_shutdown</c>: shut down another domain (privileged); arg is <see cref="SchedRemoteShutdown"/>.</summary>
    RemoteShutdown = 4,
    /// <summary><c>SCHEDOP_shutdown_code</c>: record the reason for a later shutdown; arg is <see cref="SchedShutdown"/>.</summary>
    ShutdownCode = 5,
    /// <summary><c>SCHEDOP_watchdog</c>: set up or kick a watchdog; arg is <see cref="SchedWatchdog"/>.</summary>
    Watchdog = 6,
    /// <summary><c>SCHEDOP_pin_override</c>: temporarily pin the vCPU (hardware domain only); arg is <see cref="SchedPinOverride"/>.</summary>
    PinOverride = 7,
}

/// <summary>Shutdown reasons (<c>SHUTDOWN_*</c>, <c>enum sched_shutdown_reason</c>, xen/sched.h).</summary>
public enum ShutdownReason : uint
{
    /// <summary><c>SHUTDOWN_poweroff</c>: exited normally; clean up and kill.</summary>
    Poweroff = 0,
    /// <summary><c>SHUTDOWN_reboot</c>: clean up, kill, then restart.</summary>
    Reboot = 1,
    /// <summary><c>SHUTDOWN_suspend</c>: clean up, save suspend info, kill.</summary>
    Suspend = 2,
    /// <summary><c>SHUTDOWN_crash</c>: the guest crashed.</summary>
    Crash = 3,
    /// <summary><c>SHUTDOWN_watchdog</c>: restart because a watchdog expired.</summary>
    Watchdog = 4,
    /// <summary><c>SHUTDOWN_soft_reset</c>: reset the domain's state but keep its memory.</summary>
    SoftReset = 5,
}

/// <summary><c>struct sched_shutdown</c> (xen/sched.h): argument of <c>SCHEDOP_shutdown</c> and <c>SCHEDOP_shutdown_code</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct SchedShutdown
{
    /// <summary><c>reason</c>: a <see cref="ShutdownReason"/> value (unchecked guest input).</summary>
    public uint Reason;
}

/// <summary><c>struct sched_poll</c> (xen/sched.h) for 64-bit callers, 24 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct SchedPoll
{
    /// <summary><c>XEN_GUEST_HANDLE(evtchn_port_t) ports</c>: array of <c>uint32_t</c> ports.</summary>
    public ulong Ports;
    /// <summary><c>nr_ports</c>.</summary>
    public uint NrPorts;
    /// <summary><c>timeout</c>: absolute system time in ns, 0 for none.</summary>
    public ulong Timeout;
}

/// <summary><c>struct sched_poll</c> as a 32-bit caller lays it out (4-byte handle, <c>uint64_t</c> 4-byte aligned), 16 bytes.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 4)]
public struct CompatSchedPoll
{
    /// <summary><c>ports</c>: 32-bit guest handle.</summary>
    public uint Ports;
    /// <summary><c>nr_ports</c>.</summary>
    public uint NrPorts;
    /// <summary><c>timeout</c>.</summary>
    public ulong Timeout;
}

/// <summary><c>struct sched_remote_shutdown</c> (xen/sched.h); same layout in both ABIs.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct SchedRemoteShutdown
{
    /// <summary><c>domain_id</c>: the domain to shut down.</summary>
    public ushort DomainId;
    /// <summary><c>reason</c>: a <see cref="ShutdownReason"/> value.</summary>
    public uint Reason;
}

/// <summary><c>struct sched_watchdog</c> (xen/sched.h).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct SchedWatchdog
{
    /// <summary><c>id</c>: watchdog id (0 to allocate a new one).</summary>
    public uint Id;
    /// <summary><c>timeout</c>: seconds, 0 to destroy.</summary>
    public uint Timeout;
}

/// <summary><c>struct sched_pin_override</c> (xen/sched.h).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct SchedPinOverride
{
    /// <summary><c>pcpu</c>: physical CPU, negative to end the override.</summary>
    public int Pcpu;
}
