using VmmKit.Hypercall;
using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// Exit reason 18, VMCALL: a hypercall (the guest reached it through the hypercall page). The
/// registers go to the <see cref="HypercallDispatcher{TCaller}"/> in the caller's ABI; RIP moves
/// past VMCALL unless the call was preempted (then the guest re-executes it, a continuation).
/// </summary>
internal static class VmcallExit
{
    /// <summary>Dispatches the hypercall.</summary>
    public static ExitAction Handle(VirtualCpu vcpu, in VmExit exit)
    {
        ref var gr = ref vcpu.Registers;
        var regs = new HypercallRegisters
        {
            Rax = gr.Rax, Rbx = gr.Rbx, Rcx = gr.Rcx, Rdx = gr.Rdx, Rsi = gr.Rsi, Rdi = gr.Rdi, Rbp = gr.Rbp,
            R8 = gr.R8, R9 = gr.R9, R10 = gr.R10,
        };
        vcpu.PendingAction = ExitAction.Resume;
        var disposition = vcpu.Domain.Machine.Hypercalls.Dispatch(vcpu, ref regs, vcpu.GuestMode, vcpu.Cpl, vcpu.LinearMemory);
        gr.Rax = regs.Rax; gr.Rbx = regs.Rbx; gr.Rcx = regs.Rcx; gr.Rdx = regs.Rdx; gr.Rsi = regs.Rsi; gr.Rdi = regs.Rdi;
        gr.Rbp = regs.Rbp; gr.R8 = regs.R8; gr.R9 = regs.R9; gr.R10 = regs.R10;
        if (disposition == HypercallDisposition.Completed)
            vcpu.AdvanceRip(in exit);
        else
            return ExitAction.Yield;
        return vcpu.PendingAction;
    }
}
