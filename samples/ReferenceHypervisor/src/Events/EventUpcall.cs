using VmmKit.EventChannel;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// What VmmKit.EventChannel calls when a vCPU's <c>evtchn_upcall_pending</c> goes from 0 to 1 (Xen's
/// <c>vcpu_mark_events_pending</c> then <c>vcpu_kick</c>). The upcall itself is injected by
/// <see cref="VirtualCpu"/> before its next VM entry (it reads <c>evtchn_upcall_pending</c>, as Xen's
/// <c>hvm_vcpu_has_pending_irq</c> does); here the vCPU is only kicked: a blocked vCPU becomes runnable.
/// The in-process backend domain (domid 0) has its own handler.
/// </summary>
internal sealed class EventUpcall(Machine machine) : IEventChannelUpcall
{
    /// <inheritdoc/>
    public void RaiseUpcall(EventChannelDomain domain, int vcpu)
    {
        if (domain.Id == Machine.BackendDomainId && machine.Backend is { } backend)
        {
            backend.Kick();
            return;
        }

        foreach (var d in machine.Domains)
        {
            if (d.Id == domain.Id && (uint)vcpu < (uint)d.Vcpus.Count)
                d.Vcpus[vcpu].Kick();
        }
    }
}
