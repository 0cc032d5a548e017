using System.Runtime.Intrinsics.X86;
using VmmKit.Hypercall;

namespace VmmKit.ReferenceHypervisor.Cpu;

/// <summary>
/// What CPUID tells a guest: the host's identity (vendor, family/model, brand string) with a
/// feature set filtered down to what the emulated processor implements and the hypervisor
/// virtualizes — no VMX (no nested virtualization), no APIC, no SIMD — plus the hypervisor bit
/// (CPUID.1:ECX[31]) and Xen's leaves at 0x40000000 (SDM Vol. 2A, CPUID).
/// </summary>
internal static class CpuidPolicy
{
    // CPUID.1:EDX (SDM Vol. 2A, table 3-11): PSE, TSC, MSR, PAE, CX8, PGE, CMOV, PAT.
    private const uint Leaf1EdxAllowed = (1u << 3) | (1u << 4) | (1u << 5) | (1u << 6) | (1u << 8) | (1u << 13) | (1u << 15) | (1u << 16);

    // CPUID.1:ECX: only the hypervisor-present bit; every SIMD/VMX/XSAVE/x2APIC feature is withheld.
    private const uint Leaf1EcxHypervisor = 1u << 31;

    // CPUID.80000001h:EDX: SYSCALL (11), NX (20), LM (29).
    private const uint Ext1EdxAllowed = (1u << 11) | (1u << 20) | (1u << 29);

    private const uint MaxBasicLeaf = 7, MaxExtendedLeaf = 0x80000008;

    /// <summary>Xen's leaves (VmmKit.Hypercall), announcing the version in <see cref="XenIdentity"/>.</summary>
    public static XenCpuidLeaves XenLeaves { get; } = new() { MajorVersion = XenIdentity.Major, MinorVersion = XenIdentity.Minor };

    /// <summary>The guest-visible result of CPUID(<paramref name="leaf"/>, <paramref name="subleaf"/>).</summary>
    public static CpuidResult Get(uint leaf, uint subleaf, int vcpuId, ushort domainId)
    {
        if ((leaf & 0xFFFFFF00) == XenCpuidLeaves.FirstLeaf)
        {
            // Xen's range 0x40000000-0x400000ff: its leaves, zeros past the last one.
            XenLeaves.TryGetLeaf(leaf, subleaf, (uint)vcpuId, domainId, out var x);
            return new CpuidResult(x.Eax, x.Ebx, x.Ecx, x.Edx);
        }

        switch (leaf)
        {
            case 0:
            {
                var h = Host(0, 0);
                return h with { Eax = Math.Min(h.Eax, MaxBasicLeaf) };
            }

            case 1:
            {
                var h = Host(1, 0);
                // EBX: keep brand index and CLFLUSH line size; one logical processor; APIC ID = vCPU id.
                uint ebx = (h.Ebx & 0xFFFF) | (1u << 16) | ((uint)vcpuId << 24);
                return new CpuidResult(h.Eax, ebx, Leaf1EcxHypervisor, h.Edx & Leaf1EdxAllowed);
            }

            case 0x80000000:
            {
                var h = Host(0x80000000, 0);
                return h with { Eax = Math.Min(h.Eax, MaxExtendedLeaf) };
            }

            case 0x80000001:
                return new CpuidResult(0, 0, 0, Host(0x80000001, 0).Edx & Ext1EdxAllowed);

            case 0x80000002 or 0x80000003 or 0x80000004:
                return Host(leaf, 0);                     // brand string

            case 0x80000008:
                return new CpuidResult(Host(0x80000008, 0).Eax & 0xFFFF, 0, 0, 0);  // address sizes only

            default:
                return default;                           // leaves we do not offer read as zero
        }
    }

    private static CpuidResult Host(uint leaf, uint subleaf)
    {
        if (!X86Base.IsSupported)
            return default;
        var (eax, ebx, ecx, edx) = X86Base.CpuId((int)leaf, (int)subleaf);
        return new CpuidResult((uint)eax, (uint)ebx, (uint)ecx, (uint)edx);
    }
}
