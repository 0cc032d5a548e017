namespace VmmKit.Vmx.Emulator;

/// <summary>
/// The CPUID feature bits <see cref="EmulatedProcessor"/> implements (SDM Vol. 2A, CPUID, tables 3-10/3-11 and the
/// leaf 7 / 0x80000001 tables): the one declared list a hypervisor's CPUID policy should offer, so that a guest sees
/// exactly what runs. CPUID itself always exits to the hypervisor; this class only says what is true. The x87 and
/// SIMD floating-point forms run on the host's own units (generated stubs), so the bits for FPU, SSE/SSE2, SSE3 and
/// SSE4.1 are reported only where the host has them.
/// </summary>
public static class EmulatedFeatures
{
    /// <summary>The vendor a guest must see: the processor implements Intel VMX semantics (SYSCALL only in 64-bit mode, SYSENTER in IA-32e mode, VMCALL).</summary>
    public const string Vendor = "GenuineIntel";

    /// <summary>
    /// CPUID.1:EAX (family 15, model 6, stepping 1: a generic x86-64 signature without model-specific errata, as QEMU's
    /// "kvm64" model uses).
    /// </summary>
    public const uint Signature = 0x0000_0F61;

    /// <summary>CPUID.1:EDX: FPU, DE, PSE, TSC, MSR, PAE, CX8, SEP, PGE, CMOV, PAT, PSE-36, MMX, FXSR, SSE, SSE2.</summary>
    public static uint Leaf1Edx => Fpu.ImplementedFeatures.Leaf1Edx | SystemLeaf1Edx;

    private const uint SystemLeaf1Edx = (1u << 2) | (1u << 3) | (1u << 4) | (1u << 5) | (1u << 6) | (1u << 8) | (1u << 11)
        | (1u << 13) | (1u << 15) | (1u << 16) | (1u << 17);

    /// <summary>
    /// CPUID.1:ECX: SSE3, SSSE3, CX16, PCID, SSE4.1, SSE4.2, MOVBE, POPCNT, XSAVE. The hypervisor adds bit 31
    /// ("hypervisor present") and <see cref="Leaf1EcxOsxsave"/> while the guest's CR4.OSXSAVE is set.
    /// </summary>
    public static uint Leaf1Ecx => Fpu.ImplementedFeatures.Leaf1Ecx | (1u << 13) | (1u << 17) | (1u << 22);

    /// <summary>CPUID.1:ECX[27] OSXSAVE: reads as the guest's CR4.OSXSAVE (SDM Vol. 2A, CPUID, table 3-10).</summary>
    public const uint Leaf1EcxOsxsave = 1u << 27;

    /// <summary>CPUID.(7,0):EBX: FSGSBASE, BMI1, SMEP, BMI2, INVPCID, SMAP.</summary>
    public const uint Leaf7Ebx = Fpu.ImplementedFeatures.Leaf7Ebx | (1u << 0) | (1u << 7) | (1u << 10) | (1u << 20);

    /// <summary>CPUID.80000001h:ECX: LAHF/SAHF in 64-bit mode, LZCNT.</summary>
    public const uint Ext1Ecx = (1u << 0) | Fpu.ImplementedFeatures.Extended1Ecx;

    /// <summary>
    /// CPUID leaf 0xD, sub-leaf <paramref name="subLeaf"/> (SDM Vol. 1 §13.2): the XSAVE components x87 and SSE, their
    /// 576-byte area, XSAVEOPT and XGETBV with ECX = 1; every other sub-leaf zero.
    /// </summary>
    public static (uint Eax, uint Ebx, uint Ecx, uint Edx) Leaf0D(uint subLeaf) => Fpu.ImplementedFeatures.Leaf0D(subLeaf);

    /// <summary>CPUID.80000001h:EDX: SYSCALL/SYSRET, NX, 1-GByte pages, RDTSCP, Intel 64.</summary>
    public const uint Ext1Edx = (1u << 11) | (1u << 20) | (1u << 26) | (1u << 27) | (1u << 29);

    /// <summary>CPUID.80000007h:EDX: invariant TSC (the TSC ticks once per retired instruction at a nominal constant rate).</summary>
    public const uint Ext7Edx = 1u << 8;

    /// <summary>
    /// CPUID leaf 0x15 (TSC / core crystal clock): EAX denominator, EBX numerator, ECX crystal Hz, so that
    /// TSC Hz = ECX × EBX / EAX = <see cref="EmulatedProcessor.TscFrequencyHz"/>.
    /// </summary>
    public static (uint Eax, uint Ebx, uint Ecx, uint Edx) Leaf15 => (1, 1, (uint)EmulatedProcessor.TscFrequencyHz, 0);

    /// <summary>CPUID leaf 0x16 (processor frequency): base and maximum MHz = the TSC's 1000 MHz, bus 100 MHz.</summary>
    public static (uint Eax, uint Ebx, uint Ecx, uint Edx) Leaf16 =>
        ((uint)(EmulatedProcessor.TscFrequencyHz / 1_000_000), (uint)(EmulatedProcessor.TscFrequencyHz / 1_000_000), 100, 0);

    /// <summary>CPUID.80000008h:EAX: 52-bit physical (the walk reserves no bits below 52) and 48-bit linear addresses.</summary>
    public const uint AddressSizes = 52 | (48 << 8);
}
