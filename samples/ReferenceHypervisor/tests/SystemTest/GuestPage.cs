namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// A guest's memory for the pointer arguments of hypercalls dispatched straight from a test: one page at guest virtual
/// address 0; an access reaching past it fails, as an unmapped address would (-EFAULT).
/// </summary>
internal sealed class GuestPage() : GuestBuffer(4096);
