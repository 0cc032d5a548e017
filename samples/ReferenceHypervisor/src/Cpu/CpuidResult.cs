namespace VmmKit.ReferenceHypervisor.Cpu;

/// <summary>The four registers a CPUID leaf returns.</summary>
internal readonly record struct CpuidResult(uint Eax, uint Ebx, uint Ecx, uint Edx);
