using VmmKit.ReferenceHypervisor.Cpu;
using VmmKit.ReferenceHypervisor.Devices;

namespace VmmKit.ReferenceHypervisor.Tests;

public class CpuidPolicyTests
{
    [Fact]
    public void Xen_leaves_carry_the_signature_version_and_hypercall_msr()
    {
        var l0 = CpuidPolicy.Get(0x40000000, 0, 0, 7);
        Assert.Equal((0x40000005u, 0x566e6558u, 0x65584d4du, 0x4d4d566eu), (l0.Eax, l0.Ebx, l0.Ecx, l0.Edx));
        Assert.Equal(XenIdentity.VersionNumber, CpuidPolicy.Get(0x40000001, 0, 0, 7).Eax);
        var l2 = CpuidPolicy.Get(0x40000002, 0, 0, 7);
        Assert.Equal((1u, 0x40000000u), (l2.Eax, l2.Ebx));
        var l4 = CpuidPolicy.Get(0x40000004, 0, 3, 7);
        Assert.Equal((3u, 7u), (l4.Ebx, l4.Ecx));
        Assert.Equal((uint)(Hypercall.XenHvmCpuidFeatures.VcpuIdPresent | Hypercall.XenHvmCpuidFeatures.DomidPresent), l4.Eax);
    }

    [Fact]
    public void Leaf_1_hides_vmx_and_avx_and_sets_the_hypervisor_bit()
    {
        var l1 = CpuidPolicy.Get(1, 0, 2, 1);
        Assert.Equal(0u, l1.Ecx & (1u << 5));            // VMX
        Assert.Equal(0u, l1.Ecx & (1u << 28));           // AVX (not implemented)
        Assert.Equal(1u << 31, l1.Ecx & (1u << 31));     // hypervisor present
        Assert.Equal(0u, l1.Ecx & (1u << 27));           // OSXSAVE follows CR4.OSXSAVE, clear here
        Assert.Equal(1u << 27, CpuidPolicy.Get(1, 0, 2, 1, osxsave: true).Ecx & (1u << 27));
        // MMX, FXSR, SSE, SSE2 are implemented (src/Fpu, src/Sse) and so reported.
        Assert.Equal((1u << 23) | (1u << 24), l1.Edx & ((1u << 23) | (1u << 24)));
        Assert.Equal(2u, l1.Ebx >> 24);                  // APIC ID = vCPU id
    }

    [Fact]
    public void Unknown_leaves_read_as_zero()
    {
        Assert.Equal(default, CpuidPolicy.Get(0x12345678, 0, 0, 1));
        Assert.Equal(default, CpuidPolicy.Get(0x400000FF, 0, 0, 1));
    }
}

public class DomainDevicesTests
{
    [Fact]
    public void Com1_and_port_e9_print_to_the_console_and_other_ports_float()
    {
        var console = new DomainConsole(null);
        var io = DomainDevices.Create(console);
        Assert.Equal(0x60u, io.ReadPort(0x3FD, 1));           // LSR: transmitter empty
        io.WritePort(0x3F8, 1, 'h');
        io.WritePort(0xE9, 1, 'i');
        Assert.Equal(0xE9u, io.ReadPort(0xE9, 1));
        Assert.Equal(0xFFu, io.ReadPort(0x2F8, 1));
        Assert.Equal("hi", console.Transcript);
    }

    [Fact]
    public void A_console_ring_line_is_never_cut_into_a_half_written_vcpu_line()
    {
        var lines = new List<string>();
        var console = new DomainConsole(lines.Add);
        console.Write("map grant table"u8);                      // console_io, no newline yet
        console.WriteRing("blkfront: hello on the console ring\n"u8);
        Assert.Equal("blkfront: hello on the console ring\nmap grant table", console.Transcript);
        console.Write(": 0\n"u8);
        console.WriteRing("half"u8);
        console.Flush();
        Assert.Equal(["blkfront: hello on the console ring\n", "map grant table: 0\n", "half"], lines);
        Assert.Equal("blkfront: hello on the console ring\nmap grant table: 0\nhalf", console.Transcript);
    }
}

public class CpuidTruthTests
{
    [Fact]
    public void Vendor_is_genuine_intel_and_features_are_the_emulated_list()
    {
        var l0 = CpuidPolicy.Get(0, 0, 0, 1);
        var vendor = System.Text.Encoding.ASCII.GetString([.. BitConverter.GetBytes(l0.Ebx), .. BitConverter.GetBytes(l0.Edx), .. BitConverter.GetBytes(l0.Ecx)]);
        Assert.Equal("GenuineIntel", vendor);
        Assert.True(l0.Eax >= 0x16);
        var l1 = CpuidPolicy.Get(1, 0, 0, 1);
        Assert.Equal(Vmx.Emulator.EmulatedFeatures.Leaf1Edx | (1u << 9) | (1u << 12), l1.Edx);  // + APIC and MTRR: the hypervisor's local APIC (Devices/VcpuApic.cs) and MTRRs (Exits/MtrrMsrs.cs)
        Assert.Equal(Vmx.Emulator.EmulatedFeatures.Leaf1Ecx | (1u << 31), l1.Ecx);
        Assert.Equal(Vmx.Emulator.EmulatedFeatures.Leaf7Ebx, CpuidPolicy.Get(7, 0, 0, 1).Ebx);
    }

    [Fact]
    public void Tsc_frequency_is_reported_in_leaves_15_16_and_xen_40000003()
    {
        var l15 = CpuidPolicy.Get(0x15, 0, 0, 1);
        Assert.Equal(Vmx.Emulator.EmulatedProcessor.TscFrequencyHz, (ulong)l15.Ecx * l15.Ebx / l15.Eax);
        Assert.Equal(1000u, CpuidPolicy.Get(0x16, 0, 0, 1).Eax);
        Assert.Equal(1_000_000u, CpuidPolicy.Get(0x40000003, 0, 0, 1).Ecx); // guest TSC kHz
    }
}
