namespace VmmKit.Vmx;

/// <summary>
/// The guest's execution mode as <see cref="Vmcs.GuestMode"/> derives it from the VMCS. The numbers are
/// those of Xen's <c>hvm_guest_x86_mode()</c> (the code-segment operand size in bytes, 0 for real mode,
/// 1 for virtual-8086 mode), so the value converts to <c>VmmKit.Hypercall.GuestX86Mode</c> with a cast.
/// </summary>
public enum GuestExecutionMode
{
    /// <summary>CR0.PE = 0: real-address mode.</summary>
    Real = 0,

    /// <summary>CR0.PE = 1 and RFLAGS.VM = 1: virtual-8086 mode.</summary>
    Virtual8086 = 1,

    /// <summary>Protected mode, or compatibility mode, with a 16-bit code segment (CS.D = 0).</summary>
    Protected16 = 2,

    /// <summary>Protected mode, or compatibility mode, with a 32-bit code segment (CS.D = 1).</summary>
    Protected32 = 4,

    /// <summary>64-bit mode: IA-32e mode active and CS.L = 1.</summary>
    Long64 = 8,
}
