using System.Runtime.Intrinsics.X86;
using VmmKit.Vmx.Emulator.Sse;

namespace VmmKit.Vmx.Emulator.Fpu;

/// <summary>
/// The CPUID feature bits of what src/Fpu and src/Sse implement (SDM Vol. 2 CPUID tables 3-10, 3-11, 3-8), for the
/// CPUID policy to report exactly these. The x87 and SIMD floating-point forms run on host thunks, so their bits
/// depend on the host: x87 needs an x86-64 host, SSE3 and SSE4.1 floating point need the host's SSE3/SSE4.1.
/// </summary>
internal static class ImplementedFeatures
{
    /// <summary>CPUID.1:EDX — FPU (0), MMX (23), FXSR (24), SSE (25), SSE2 (26).</summary>
    public static uint Leaf1Edx
    {
        get
        {
            _ = Engine.HandlerTable.Entries; // registration builds the thunks
            uint v = 1u << 23 | 1u << 24;
            if (X87Thunks.Available) v |= 1u << 0;
            if (FloatThunks.Available) v |= 1u << 25 | 1u << 26;
            return v;
        }
    }

    /// <summary>
    /// CPUID.1:ECX — SSE3 (0), SSSE3 (9), SSE4.1 (19), SSE4.2 (20), MOVBE (22), POPCNT (23), XSAVE (26). OSXSAVE
    /// (27) is CR4.OSXSAVE and is added by the policy at CPUID time.
    /// </summary>
    public static uint Leaf1Ecx
    {
        get
        {
            _ = Engine.HandlerTable.Entries;
            uint v = 1u << 9 | 1u << 20 | 1u << 22 | 1u << 23 | 1u << 26;
            if (FloatThunks.Available && Sse3.IsSupported) v |= 1u << 0;
            if (FloatThunks.Available && Sse41.IsSupported) v |= 1u << 19;
            return v;
        }
    }

    /// <summary>CPUID.(EAX=7,ECX=0):EBX — BMI1 (3), BMI2 (8).</summary>
    public const uint Leaf7Ebx = 1u << 3 | 1u << 8;

    /// <summary>CPUID.80000001H:ECX — LZCNT (5).</summary>
    public const uint Extended1Ecx = 1u << 5;

    /// <summary>
    /// CPUID.(EAX=0DH, ECX=<paramref name="subLeaf"/>) for the current XCR0 (SDM Vol. 1 §13.2): sub-leaf 0 EAX = 3
    /// (x87, SSE), EBX = ECX = 576 (legacy region + header), EDX = 0; sub-leaf 1 EAX = XSAVEOPT (0) | XGETBV with
    /// ECX = 1 (2); every other sub-leaf zero.
    /// </summary>
    public static (uint Eax, uint Ebx, uint Ecx, uint Edx) Leaf0D(uint subLeaf) => subLeaf switch
    {
        0 => ((uint)StateArea.SupportedXcr0, StateArea.XsaveSize, StateArea.XsaveSize, 0),
        1 => (1u << 0 | 1u << 2, 0, 0, 0),
        _ => (0, 0, 0, 0),
    };
}
