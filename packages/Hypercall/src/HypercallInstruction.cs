namespace VmmKit.Hypercall;

/// <summary>The trapping instruction the hypercall page's stubs use, by processor vendor.</summary>
public enum HypercallInstruction
{
    /// <summary>Intel VT-x <c>VMCALL</c> (0F 01 C1), as Xen's <c>vmx_init_hypercall_page</c> writes.</summary>
    Vmcall,

    /// <summary>AMD-V <c>VMMCALL</c> (0F 01 D9), as Xen's <c>svm_init_hypercall_page</c> writes.</summary>
    Vmmcall,
}
