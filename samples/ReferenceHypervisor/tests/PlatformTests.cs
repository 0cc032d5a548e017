using System.Buffers.Binary;
using System.Text;
using Iced.Intel;
using VmmKit.Hypercall;
using VmmKit.ReferenceHypervisor.Cpu;
using VmmKit.ReferenceHypervisor.Demo;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// What a PVH guest finds besides the hypercalls: the MSRs Linux probes (answered as Xen's guest_rdmsr and vMCE do), the
/// local APIC (xAPIC), and the toolstack's ACPI tables behind <c>hvm_start_info.rsdp_paddr</c>.
/// </summary>
public class PlatformTests
{
    private const uint Load = 0x100000, Results = Load + 0x3000;

    /// <summary>Boots an Iced-assembled 32-bit guest that ends with CLI; HLT (poweroff) and returns its domain.</summary>
    private static Domain Run(Action<Assembler> body)
    {
        var a = new Assembler(32);
        a.mov(esp, Load + 0x2000);
        body(a);
        a.cli();
        a.hlt();
        var stream = new MemoryStream();
        a.Assemble(new StreamCodeWriter(stream), Load);
        var machine = new Machine(32 << 20, ProcessorProviders.CreateDefault());
        Assert.True(machine.TryCreateDomain(new DomainConfig("t", Elf32ImageWriter.Write(Load, stream.ToArray(), 0x4000, Load), 8 << 20), out var d, out string e), e);
        machine.Run();
        return d!;
    }

    private static ulong Result(Domain d, int index)
    {
        Span<byte> b = stackalloc byte[8];
        Assert.True(d.Physical.TryRead(new Ept.GuestPhysicalAddress(Results + (ulong)(index * 8)), b, out _));
        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }

    [Fact]
    public void The_msrs_linux_probes_read_as_xen_answers_an_hvm_guest_and_never_fault()
    {
        uint[] msrs = [0x8B, 0x3A, 0xCE, 0x140, 0x179, 0x17A, 0x400, 0x401, 0x1B];
        var d = Run(a =>
        {
            // The microcode-revision sequence: write 0, then read.
            a.mov(ecx, 0x8B);
            a.xor(eax, eax);
            a.xor(edx, edx);
            a.wrmsr();
            for (int i = 0; i < msrs.Length; i++)
            {
                a.mov(ecx, msrs[i]);
                a.rdmsr();
                a.mov(__dword_ptr[Results + (i * 8)], eax);
                a.mov(__dword_ptr[Results + (i * 8) + 4], edx);
            }
        });
        Assert.True(d.State == DomainState.Shutdown, d.CrashReport);
        ulong[] expected =
        [
            0,                                   // IA32_BIOS_SIGN_ID: no microcode
            1,                                   // IA32_FEATURE_CONTROL: locked, no VMX outside SMX, no LMCE
            0,                                   // PLATFORM_INFO: no CPUID faulting
            0,                                   // MISC_FEATURES_ENABLES
            (1ul << 11) | (1ul << 24) | 2,       // MCG_CAP: Xen's vMCE, TES_P | SER_P, 2 banks
            0,                                   // MCG_STATUS
            ulong.MaxValue,                      // MC0_CTL
            0,                                   // MC0_STATUS
            0xFEE0_0000 | (1ul << 11) | (1ul << 8),   // APIC base: default address, enabled, BSP (EXTD: the APIC's mode)
        ];
        const ulong extd = 1ul << 10;
        for (int i = 0; i < expected.Length; i++)
        {
            ulong got = msrs[i] == 0x1B ? Result(d, i) & ~extd : Result(d, i);
            Assert.True(expected[i] == got, $"MSR 0x{msrs[i]:x}: 0x{Result(d, i):x}, expected 0x{expected[i]:x}");
        }
    }

    [Fact]
    public void A_non_zero_write_to_the_microcode_revision_msr_is_a_general_protection_fault()
    {
        // No IDT: the #GP becomes a triple fault, which crashes the domain.
        var d = Run(a =>
        {
            a.mov(ecx, 0x8B);
            a.mov(eax, 1);
            a.xor(edx, edx);
            a.wrmsr();
        });
        Assert.Equal(DomainState.Crashed, d.State);
        Assert.Contains("triple fault", d.CrashReport, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void The_registered_time_memory_area_gets_a_consistent_copy_of_the_pvclock()
    {
        const uint page = Load + 0x2000, handle = Results + 0x100;
        var d = Run(a =>
        {
            a.mov(ecx, 0x40000000);                      // install the hypercall page
            a.mov(eax, page);
            a.xor(edx, edx);
            a.wrmsr();
            a.mov(__dword_ptr[handle], Results);         // struct vcpu_register_time_memory_area (compat handle)
            a.mov(ebx, 13);                              // VCPUOP_register_vcpu_time_memory_area
            a.xor(ecx, ecx);                             // vCPU 0
            a.mov(edx, handle);
            a.mov(eax, page + (24 * 32));                // __HYPERVISOR_vcpu_op
            a.call(eax);
            a.mov(__dword_ptr[handle + 8], eax);
        });
        Assert.True(d.State == DomainState.Shutdown, d.CrashReport);
        Span<byte> rc = stackalloc byte[4];
        Assert.True(d.Physical.TryRead(new Ept.GuestPhysicalAddress(handle + 8), rc, out _));
        Assert.Equal(0, BinaryPrimitives.ReadInt32LittleEndian(rc));
        Span<byte> t = stackalloc byte[32];
        Assert.True(d.Physical.TryRead(new Ept.GuestPhysicalAddress(Results), t, out _));
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(t);
        Assert.True(version != 0 && (version & 1) == 0, $"version {version}");
        Assert.Equal(GuestTime.TscToSystemMul, BinaryPrimitives.ReadUInt32LittleEndian(t[24..]));
        Assert.Equal(GuestTime.TscShift, (sbyte)t[28]);
        Assert.Equal(1, t[29] & 1);                      // XEN_PVCLOCK_TSC_STABLE_BIT
        ulong tsc = BinaryPrimitives.ReadUInt64LittleEndian(t[8..]);
        Assert.Equal(GuestTime.ToNanoseconds(tsc), BinaryPrimitives.ReadUInt64LittleEndian(t[16..]));
        Assert.True(tsc > 0);
    }

    [Fact]
    public void Cpuid_announces_the_local_apic_but_not_x2apic()
    {
        var l1 = CpuidPolicy.Get(1, 0, 0, 1);
        Assert.Equal(1u << 9, l1.Edx & (1u << 9));
        Assert.Equal(0u, l1.Ecx & (1u << 21));           // xAPIC only (Devices/VcpuApic.cs)
        Assert.Equal(0u, l1.Ecx & (1u << 24));           // no TSC-deadline timer
    }

    [Fact]
    public void Acpi_tables_have_valid_checksums_and_one_enabled_local_apic_per_vcpu()
    {
        const ulong at = 0xFFFD000;
        byte[] page = new byte[AcpiTables.Size];
        ulong rsdp = AcpiTables.Build(page, at, vcpus: 3);
        Span<byte> p = page;
        Span<byte> r = p[(int)(rsdp - at)..];
        Assert.Equal("RSD PTR ", Encoding.ASCII.GetString(r[..8]));
        Assert.Equal(0, Sum(r[..20]));
        Assert.Equal(0, Sum(r[..36]));
        Assert.Equal(2, r[15]);

        Span<byte> xsdt = Table(p, at, BinaryPrimitives.ReadUInt64LittleEndian(r[24..]), "XSDT");
        var tables = new List<string>();
        for (int i = 36; i < xsdt.Length; i += 8)
            tables.Add(Encoding.ASCII.GetString(Table(p, at, BinaryPrimitives.ReadUInt64LittleEndian(xsdt[i..]), null)[..4]));
        Assert.Equal(["FACP", "APIC"], tables);

        Span<byte> fadt = Table(p, at, BinaryPrimitives.ReadUInt64LittleEndian(xsdt[36..]), "FACP");
        Assert.NotEqual(0u, BinaryPrimitives.ReadUInt32LittleEndian(fadt[112..]) & (1u << 20));   // HW_REDUCED_ACPI
        Table(p, at, BinaryPrimitives.ReadUInt64LittleEndian(fadt[140..]), "DSDT");

        Span<byte> madt = Table(p, at, BinaryPrimitives.ReadUInt64LittleEndian(xsdt[44..]), "APIC");
        Assert.Equal(0xFEE0_0000u, BinaryPrimitives.ReadUInt32LittleEndian(madt[36..]));
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(madt[40..]));                     // no 8259 pair
        Assert.Equal(36 + 8 + (3 * 8), madt.Length);
        for (int i = 0; i < 3; i++)
        {
            Span<byte> e = madt.Slice(44 + (i * 8), 8);
            Assert.Equal((0, 8, i, i, 1u), (e[0], e[1], e[2], e[3], BinaryPrimitives.ReadUInt32LittleEndian(e[4..])));
        }
    }

    [Fact]
    public void Start_info_points_at_the_rsdp_in_reserved_memory()
    {
        var d = Run(_ => { });
        Span<byte> info = stackalloc byte[56];
        Assert.True(d.Physical.TryRead(new Ept.GuestPhysicalAddress(d.Boot.StartInfoAddress), info, out _));
        ulong rsdp = BinaryPrimitives.ReadUInt64LittleEndian(info[32..]);
        Assert.Equal(d.MemoryBytes - (Domain.SpecialPages * 4096ul), rsdp);
        Span<byte> sig = stackalloc byte[8];
        Assert.True(d.Physical.TryRead(new Ept.GuestPhysicalAddress(rsdp), sig, out _));
        Assert.Equal("RSD PTR ", Encoding.ASCII.GetString(sig));
    }

    private static Span<byte> Table(Span<byte> page, ulong at, ulong address, string? signature)
    {
        Span<byte> t = page[(int)(address - at)..];
        int length = (int)BinaryPrimitives.ReadUInt32LittleEndian(t[4..]);
        t = t[..length];
        if (signature is not null)
            Assert.Equal(signature, Encoding.ASCII.GetString(t[..4]));
        Assert.Equal(0, Sum(t));
        return t;
    }

    private static int Sum(ReadOnlySpan<byte> bytes)
    {
        byte s = 0;
        foreach (byte b in bytes)
            s += b;
        return s;
    }
}
