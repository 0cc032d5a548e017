namespace VmmKit.Vmx.Tests.Bochs;

/// <summary>One VMCS state the harness VMCLEARs, VMWRITEs field by field and VMLAUNCHes.</summary>
/// <param name="Name">What the case breaks (or "valid").</param>
/// <param name="Vmcs">The full VMCS contents.</param>
internal sealed record HarnessCase(string Name, Vmcs Vmcs);
