namespace VmmKit.Hypercall;

/// <summary>The four registers a CPUID leaf returns.</summary>
/// <param name="Eax">EAX.</param>
/// <param name="Ebx">EBX.</param>
/// <param name="Ecx">ECX.</param>
/// <param name="Edx">EDX.</param>
public readonly record struct XenCpuidResult(uint Eax, uint Ebx, uint Ecx, uint Edx);
