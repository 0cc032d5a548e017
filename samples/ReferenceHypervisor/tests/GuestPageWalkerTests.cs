using VmmKit.Ept;
using VmmKit.ReferenceHypervisor.Demo;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>The hypervisor-side walk of a guest's page tables (used for hypercall buffers once the guest enables paging).</summary>
public class GuestPageWalkerTests
{
    private const ulong Cr0Pg = 1ul << 31, Cr0Wp = 1ul << 16, Cr4Pse = 1ul << 4, Cr4Pae = 1ul << 5, EferLma = 1ul << 10;

    private static GuestPhysicalMemory NewGuest(out Machine machine)
    {
        machine = new Machine(32 << 20, ProcessorProviders.CreateDefault());
        Assert.True(machine.TryCreateDomain(new DomainConfig("walk", DemoGuest.Build(), 8 << 20), out var d, out string error), error);
        return d!.Physical;
    }

    private static void W32(GuestPhysicalMemory m, ulong gpa, uint v) => Assert.True(m.TryWrite(new GuestPhysicalAddress(gpa), in v));

    private static void W64(GuestPhysicalMemory m, ulong gpa, ulong v) => Assert.True(m.TryWrite(new GuestPhysicalAddress(gpa), in v));

    [Fact]
    public void Walks_32_bit_paging_with_4k_and_4m_pages_and_honours_write_protect()
    {
        var m = NewGuest(out var machine);
        using (machine)
        {
            // CR3 = 0x10000; PDE 1 -> PT at 0x11000 (present, writable); PTE 2 -> 0x345000 read-only; PDE 2: 4 MiB page at 0x400000.
            W32(m, 0x10000 + 4, 0x11000 | 3);
            W32(m, 0x11000 + (2 * 4), 0x345000 | 1);
            W32(m, 0x10000 + 8, 0x400000 | 0x83);
            Assert.True(GuestPageWalker.TryTranslate(m, Cr0Pg, 0x10000, 0, 0, 0x402123, write: false, out ulong gpa));
            Assert.Equal(0x345123ul, gpa);
            Assert.False(GuestPageWalker.TryTranslate(m, Cr0Pg | Cr0Wp, 0x10000, 0, 0, 0x402123, write: true, out _));
            Assert.True(GuestPageWalker.TryTranslate(m, Cr0Pg, 0x10000, Cr4Pse, 0, 0x812345, write: true, out gpa));
            Assert.Equal(0x412345ul, gpa);
            Assert.False(GuestPageWalker.TryTranslate(m, Cr0Pg, 0x10000, 0, 0, 0xC00000, write: false, out _));   // PDE 3 not present
            Assert.False(GuestPageWalker.TryTranslate(m, Cr0Pg, 0x7FFF_F000, 0, 0, 0, write: false, out _));     // tables outside RAM
        }
    }

    [Fact]
    public void Walks_four_level_paging_with_a_2m_page()
    {
        var m = NewGuest(out var machine);
        using (machine)
        {
            // PML4 0x20000 -> PDPT 0x21000 -> PD 0x22000; PD entry 3 is a 2 MiB page at 0x600000.
            W64(m, 0x20000, 0x21000 | 3);
            W64(m, 0x21000, 0x22000 | 3);
            W64(m, 0x22000 + (3 * 8), 0x600000 | 0x83);
            Assert.True(GuestPageWalker.TryTranslate(m, Cr0Pg, 0x20000, Cr4Pae, EferLma, 0x6ABCDE, write: true, out ulong gpa));
            Assert.Equal(0x6ABCDEul, gpa);
            Assert.False(GuestPageWalker.TryTranslate(m, Cr0Pg, 0x20000, Cr4Pae, EferLma, 0x8000_0000_0000, write: false, out _));
        }
    }
}
