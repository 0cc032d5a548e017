using VmmKit.EventChannel;
using VmmKit.Hypercall;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// EVTCHNOP_send with Xen's <c>evtchn_check_pollers</c> (xen/common/event_channel.c): a port marked pending wakes the
/// vCPUs blocked in SCHEDOP_poll even when it is masked and so raises no upcall, which is how Linux's PV spinlock
/// (arch/x86/xen/spinlock.c, <c>xen_qlock_wait</c>/<c>xen_qlock_kick</c>) sleeps and is woken. The round-robin scheduler
/// looks at every blocked vCPU each round anyway; on the threaded one a polling vCPU's thread waits until it is woken.
/// </summary>
internal static class EventPollers
{
    /// <summary><c>EVTCHNOP_send</c>: the send (VmmKit.EventChannel), then every polling vCPU looks at its ports again.</summary>
    public static long Send(ref HypercallCall<VirtualCpu> call)
    {
        if (!call.TryCopyFromGuest(call.Argument(1), out EvtchnSend send))
            return XenErrno.EFAULT.Negated();
        var machine = call.Caller.Domain.Machine;
        long rc = machine.Events.Send(call.Caller.Domain.Events, send.Port);
        if (rc == 0)
            WakePollers(machine);
        return rc;
    }

    /// <summary>
    /// Wakes the thread of every vCPU blocked in SCHEDOP_poll (any domain: an interdomain send lands in another); each
    /// checks its ports and its timeout (<see cref="VcpuTimers.ShouldWake"/>) and waits again when none is pending.
    /// </summary>
    public static void WakePollers(Machine machine)
    {
        // Indexed loops: a send is a hot path, and foreach over IReadOnlyList would allocate its enumerators.
        var domains = machine.Domains;
        for (int d = 0; d < domains.Count; d++)
        {
            var vcpus = domains[d].Vcpus;
            for (int v = 0; v < vcpus.Count; v++)
            {
                var vcpu = vcpus[v];
                if (vcpu.Thread is { } thread && vcpu.IsBlocked && vcpu.Timers.Polling)
                    thread.Wake();
            }
        }
    }
}
