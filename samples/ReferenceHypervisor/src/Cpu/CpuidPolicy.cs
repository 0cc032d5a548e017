using System.Text;
using VmmKit.Hypercall;
using VmmKit.Vmx.Emulator;

namespace VmmKit.ReferenceHypervisor.Cpu;

/// <summary>
/// What CPUID tells a guest: the truth about the emulated processor — vendor GenuineIntel and exactly the features
/// VmmKit.Vmx.Emulator implements (<see cref="EmulatedFeatures"/>), never the host's — plus the hypervisor bit
/// (CPUID.1:ECX[31]), the TSC frequency (leaves 0x15/0x16, Xen's 0x40000003) and Xen's leaves at 0x40000000
/// (SDM Vol. 2A, CPUID), and the local APIC and MTRRs the hypervisor gives every vCPU. No VMX (no nested virtualization), no
/// x2APIC, no AVX.
/// </summary>
internal static class CpuidPolicy
{
    private const uint Leaf1EcxHypervisor = 1u << 31;

    /// <summary>CPUID.1:EDX[9]: every vCPU has a local APIC (xAPIC; Devices/VcpuApic.cs). x2APIC is not offered.</summary>
    private const uint Leaf1EdxApic = 1u << 9;

    /// <summary>CPUID.1:EDX[12]: MTRRs, which the hypervisor keeps per vCPU as Xen does (Exits/MtrrMsrs.cs).</summary>
    private const uint Leaf1EdxMtrr = 1u << 12;

    private const uint MaxBasicLeaf = 0x16, MaxExtendedLeaf = 0x80000008;

    private static readonly uint[] VendorRegisters = VendorWords(EmulatedFeatures.Vendor);
    private static readonly uint[] Brand = BrandWords("VmmKit emulated x86-64 processor");

    /// <summary>Xen's leaves (VmmKit.Hypercall), announcing the version in <see cref="XenIdentity"/> and the 1 GHz TSC.</summary>
    public static XenCpuidLeaves XenLeaves { get; } = new()
    {
        MajorVersion = XenIdentity.Major,
        MinorVersion = XenIdentity.Minor,
        // Leaf 0x40000003 (xen/include/public/arch-x86/cpuid.h): guest and host TSC in kHz; ns = (tsc << 1) * 2^31 >> 32.
        Time = new XenCpuidTime
        {
            TscKhz = (uint)(EmulatedProcessor.TscFrequencyHz / 1000),
            HostTscKhz = (uint)(EmulatedProcessor.TscFrequencyHz / 1000),
            MulFrac = 0x8000_0000,
            Shift = 1,
        },
    };

    /// <summary>
    /// The guest-visible result of CPUID(<paramref name="leaf"/>, <paramref name="subleaf"/>); <paramref name="osxsave"/> is the
    /// guest's CR4.OSXSAVE, which CPUID.1:ECX[27] reflects.
    /// </summary>
    public static CpuidResult Get(uint leaf, uint subleaf, int vcpuId, ushort domainId, bool osxsave = false)
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
                return new CpuidResult(MaxBasicLeaf, VendorRegisters[0], VendorRegisters[2], VendorRegisters[1]);

            case 1:
                // EBX: CLFLUSH line size 8 (x 8 bytes), one logical processor, APIC ID = vCPU id.
                return new CpuidResult(EmulatedFeatures.Signature, (8u << 8) | (1u << 16) | ((uint)vcpuId << 24),
                    EmulatedFeatures.Leaf1Ecx | Leaf1EcxHypervisor | (osxsave ? EmulatedFeatures.Leaf1EcxOsxsave : 0),
                    EmulatedFeatures.Leaf1Edx | Leaf1EdxApic | Leaf1EdxMtrr);

            case 7:
                return subleaf == 0 ? new CpuidResult(0, EmulatedFeatures.Leaf7Ebx, 0, 0) : default;

            case 0xD:
            {
                var (a, b, c, d) = EmulatedFeatures.Leaf0D(subleaf);
                return new CpuidResult(a, b, c, d);
            }

            case 0x15:
            {
                var (a, b, c, d) = EmulatedFeatures.Leaf15;
                return new CpuidResult(a, b, c, d);
            }

            case 0x16:
            {
                var (a, b, c, d) = EmulatedFeatures.Leaf16;
                return new CpuidResult(a, b, c, d);
            }

            case 0x80000000:
                return new CpuidResult(MaxExtendedLeaf, 0, 0, 0);

            case 0x80000001:
                return new CpuidResult(0, 0, EmulatedFeatures.Ext1Ecx, EmulatedFeatures.Ext1Edx);

            case 0x80000002 or 0x80000003 or 0x80000004:
            {
                int k = (int)(leaf - 0x80000002) * 4;
                return new CpuidResult(Brand[k], Brand[k + 1], Brand[k + 2], Brand[k + 3]);
            }

            case 0x80000007:
                return new CpuidResult(0, 0, 0, EmulatedFeatures.Ext7Edx);

            case 0x80000008:
                return new CpuidResult(EmulatedFeatures.AddressSizes, 0, 0, 0);

            default:
                return default;                           // leaves we do not offer read as zero
        }
    }

    private static uint[] VendorWords(string vendor)
    {
        // EBX, EDX, ECX hold the 12 characters in that order ("Genu", "ineI", "ntel").
        byte[] b = Encoding.ASCII.GetBytes(vendor);
        return [BitConverter.ToUInt32(b, 0), BitConverter.ToUInt32(b, 4), BitConverter.ToUInt32(b, 8)];
    }

    private static uint[] BrandWords(string brand)
    {
        byte[] b = new byte[48];
        Encoding.ASCII.GetBytes(brand).CopyTo(b, 0);
        var words = new uint[12];
        for (int k = 0; k < 12; k++) words[k] = BitConverter.ToUInt32(b, k * 4);
        return words;
    }
}
