using VmmKit.Hypercall;
using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// Exit reason 18, VMCALL: a hypercall (the guest reached it through the hypercall page). The
/// vCPU's registers go (in place) to the <see cref="HypercallDispatcher{TCaller}"/> in the caller's ABI; RIP moves
/// past VMCALL unless the call was preempted (then the guest re-executes it, a continuation).
/// </summary>
internal static class VmcallExit
{
    /// <summary>Dispatches the hypercall.</summary>
    public static ExitAction Handle(VirtualCpu vcpu, in VmExit exit)
    {
        // The dispatcher works on the vCPU's own registers (same layout, HypercallRegisters remarks): no copies.
        ref var regs = ref HypercallRegisters.View(ref vcpu.Registers);
        vcpu.PendingAction = ExitAction.Resume;
        var mode = vcpu.GuestMode;
        bool long64 = mode == GuestX86Mode.Long64;
        ulong op = long64 ? regs.Rax : (uint)regs.Rax, argument0 = long64 ? regs.Rdi : (uint)regs.Rbx;
        Hypercalls.HypercallPreemption.BeginDispatch(vcpu);
        var disposition = vcpu.Domain.Machine.Hypercalls.Dispatch(vcpu, ref regs, mode, vcpu.Cpl, vcpu.LinearMemory);
        if (disposition == HypercallDisposition.Completed)
        {
            Hypercalls.EnosysLog.After(vcpu, long64, op, argument0, regs.Rax);
            vcpu.AdvanceRip(in exit);
        }
        else
            return ExitAction.Yield;
        return vcpu.PendingAction;
    }
}
