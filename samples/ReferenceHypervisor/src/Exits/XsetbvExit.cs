using VmmKit.Vmx;
using VmmKit.Vmx.Emulator;

namespace VmmKit.ReferenceHypervisor;

/// <summary>Exit reason 55, XSETBV (always exits in VMX non-root operation, SDM Vol. 3C §26.1.2).</summary>
internal static class XsetbvExit
{
    /// <summary>
    /// Applies XCR[ECX] = EDX:EAX on the processor as Xen's handle_xsetbv does, or injects #GP(0) for a value the
    /// processor does not support (SDM Vol. 2 XSETBV); the processor checked #UD and CPL before exiting.
    /// </summary>
    public static ExitAction Handle(VirtualCpu vcpu, in VmExit exit)
    {
        ref var r = ref vcpu.Registers;
        ulong value = (r.Rdx << 32) | (uint)r.Rax;
        if (vcpu.Processor is EmulatedProcessor cpu && cpu.TrySetExtendedControlRegister((uint)r.Rcx, value))
            vcpu.AdvanceRip(in exit);
        else
            vcpu.InjectGeneralProtection();
        return ExitAction.Resume;
    }
}
