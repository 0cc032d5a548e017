namespace VmmKit.ReferenceHypervisor.Hypercalls;

/// <summary>
/// Xen's <c>hypercall_preempt_check</c> for this hypervisor: a long hypercall (a batch of grant-table operations, a
/// multicall, a console write) gives the processor back once it has checked <see cref="OperationsPerExit"/> times
/// within one dispatch, and is continued: the handler leaves the arguments of what remains, RIP stays on VMCALL, the
/// scheduler runs the other vCPUs, and the guest executes VMCALL again. So one instruction cannot hold the host thread (and, with the
/// round-robin scheduler, every other domain) for as long as the batch it names. Xen preempts when a softirq is
/// pending (the vCPU's slice ended); counting the checks keeps runs deterministic. Each check also counts against the
/// vCPU's instruction budget (<see cref="VirtualCpu.HypercallOperations"/>), checked at the exit that ends the dispatch.
/// </summary>
internal static class HypercallPreemption
{
    /// <summary>Checks (about one per operation of a batch) a dispatch runs before it is preempted.</summary>
    public const uint OperationsPerExit = 1024;

    /// <summary>Before each dispatch: the new dispatch has done no work yet.</summary>
    public static void BeginDispatch(VirtualCpu vcpu) => vcpu.HypercallPreemptChecks = 0;

    /// <summary>
    /// The dispatcher's preemption hook: true once this dispatch has checked <see cref="OperationsPerExit"/> times (and
    /// the count starts again, so a caller that dispatches without <see cref="BeginDispatch"/> is preempted every
    /// <see cref="OperationsPerExit"/> checks).
    /// </summary>
    public static bool Check(VirtualCpu vcpu)
    {
        vcpu.HypercallOperations++;   // charged against the instruction budget (Machine.InstructionBudgetExceeded)
        if (++vcpu.HypercallPreemptChecks < OperationsPerExit)
            return false;
        vcpu.HypercallPreemptChecks = 0;
        return true;
    }
}
