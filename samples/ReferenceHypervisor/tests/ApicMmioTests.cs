using Iced.Intel;
using VmmKit.Hypercall;
using VmmKit.ReferenceHypervisor.Demo;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// The xAPIC page emulated on its EPT violations (src/Devices/ApicMmio.cs), on tiny Iced-assembled guests: register
/// widths as x86 writes them, and a hostile instruction on the page crashes only the domain. The whole APIC is judged
/// against QEMU TCG by the <c>apic</c>, <c>shadow</c> and <c>idt64</c> kernels (QemuOracleTests).
/// </summary>
public class ApicMmioTests
{
    private const uint Load = 0x100000;
    private const uint Apic = 0xFEE0_0000;

    private static Domain Run(Action<Assembler> body)
    {
        var a = new Assembler(32);
        a.mov(esp, Load + 0x4000);
        body(a);
        var stream = new MemoryStream();
        a.Assemble(new StreamCodeWriter(stream), Load);
        var machine = new Machine(32 << 20, ProcessorProviders.CreateDefault());
        Assert.True(machine.TryCreateDomain(new DomainConfig("t", Elf32ImageWriter.Write(Load, stream.ToArray(), 0x4000, Load), 8 << 20), out var d, out string e), e);
        machine.Run();
        return d!;
    }

    [Fact]
    public void Loads_and_stores_reach_the_registers_with_x86_register_widths()
    {
        var d = Run(a =>
        {
            a.mov(__dword_ptr[Apic + 0x80], 0x50);        // TPR <- imm32
            a.mov(ebx, 0x1234_5678);
            a.mov(bh, __byte_ptr[Apic + 0x30]);            // version bits 7:0 (0x14) into BH, the rest of EBX kept
            a.mov(ecx, 0xFFFF_FFFF);
            a.mov(cx, __word_ptr[Apic + 0x80]);            // TPR into CX
            a.mov(esi, 0x77);
            a.mov(__dword_ptr[Apic + 0xF0], esi);          // SVR <- ESI
            a.mov(edx, __dword_ptr[Apic + 0xF0]);
            a.cli();
            a.hlt();
        });
        Assert.Equal(DomainState.Shutdown, d.State);
        var r = d.Vcpus[0].Registers;
        Assert.Equal(0x1234_1478UL, r.Rbx);
        Assert.Equal(0xFFFF_0050UL, r.Rcx);
        Assert.Equal(0x77UL, r.Rdx);                       // software-disabled: SVR bit 8 clear, vector 0x77
        Assert.Equal(0x50, d.Vcpus[0].Apic.Tpr);
    }

    /// <summary>
    /// An access running past the page's end is split there, as Xen's emulator splits it at pages
    /// (<c>hvmemul_linear_mmio_access</c>): the APIC answers for its own bytes (reserved: 0), and the bytes of the next
    /// page, where nothing is, read as all ones (Xen's unclaimed MMIO) and are dropped on a write.
    /// </summary>
    [Fact]
    public void An_access_across_the_page_end_reads_the_next_pages_bytes_as_unclaimed()
    {
        var d = Run(a =>
        {
            a.mov(__dword_ptr[Apic + 0xFFE], 0x1234_5678);
            a.mov(eax, __dword_ptr[Apic + 0xFFE]);
            a.mov(ebx, __dword_ptr[Apic + 0x80]);
            a.cli();
            a.hlt();
        });
        Assert.Equal(DomainState.Shutdown, d.State);
        Assert.Equal(0xFFFF_0000UL, d.Vcpus[0].Registers.Rax);
        Assert.Equal(0UL, d.Vcpus[0].Registers.Rbx);       // TPR untouched
    }

    [Fact]
    public void Another_instruction_on_the_apic_page_crashes_only_the_domain()
    {
        var d = Run(a => { a.add(__dword_ptr[Apic + 0x80], 1); a.cli(); a.hlt(); });
        Assert.Equal(DomainState.Crashed, d.State);
        Assert.Contains("unsupported access to the APIC page", d.CrashReport);
    }
}
