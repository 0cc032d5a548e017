namespace VmmKit.Hypercall;

/// <summary>
/// What the hypervisor does with the guest's RIP after a dispatch (Xen's <c>HVM_HCALL_completed</c>
/// and <c>HVM_HCALL_preempted</c>).
/// </summary>
public enum HypercallDisposition
{
    /// <summary>The hypercall finished; RAX/EAX holds the result. Advance RIP past the VMCALL/VMMCALL.</summary>
    Completed,

    /// <summary>
    /// The handler asked to be re-entered (a continuation, Xen's <c>hypercall_create_continuation</c>):
    /// RAX holds the hypercall number and the argument registers its updated arguments. Leave RIP on
    /// the VMCALL so the guest executes it again on its next entry; the hypervisor may run other
    /// work (events, other vCPUs) in between.
    /// </summary>
    Preempted,
}
