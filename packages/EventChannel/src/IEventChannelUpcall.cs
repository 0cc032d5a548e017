namespace VmmKit.EventChannel;

/// <summary>
/// How events reach a vCPU: the hypervisor's half of Xen's <c>vcpu_mark_events_pending()</c>.
/// Called after <c>vcpu_info.evtchn_upcall_pending</c> went from 0 to 1; the hypervisor then
/// injects the upcall vector (<c>HVMOP_set_evtchn_upcall_vector</c>), asserts the
/// <c>HVM_PARAM_CALLBACK_IRQ</c> line, kicks a blocked vCPU, or (for a host-side domain) runs a
/// host callback.
/// </summary>
/// <remarks>
/// Called on the thread that raised the event (a vCPU or backend thread), possibly while the
/// package holds a channel lock: the implementation must be quick, must not call back into
/// event channel operations synchronously, and must not throw.
/// </remarks>
public interface IEventChannelUpcall
{
    /// <summary>Raises the event upcall on one vCPU.</summary>
    /// <param name="domain">The domain.</param>
    /// <param name="vcpu">The vCPU id.</param>
    void RaiseUpcall(EventChannelDomain domain, int vcpu);
}
