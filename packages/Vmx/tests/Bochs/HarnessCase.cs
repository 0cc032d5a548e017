namespace VmmKit.Vmx.Tests.Bochs;

/// <summary>One VMCS state the harness VMCLEARs, VMWRITEs field by field and VMLAUNCHes.</summary>
/// <param name="Name">What the case breaks (or "valid").</param>
/// <param name="Vmcs">The full VMCS contents.</param>
/// <param name="Watch">
/// Physical addresses of 8-byte words the harness logs ("A" lines) after the case ends, e.g. EPT entries whose
/// accessed and dirty flags the case may have set; null for none.
/// </param>
internal sealed record HarnessCase(string Name, Vmcs Vmcs, IReadOnlyList<uint>? Watch = null);
