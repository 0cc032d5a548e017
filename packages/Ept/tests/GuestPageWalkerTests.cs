namespace VmmKit.Ept.Tests;

/// <summary>
/// The guest-paging walk (SDM Vol. 3A chapter 4) over 8 MiB of guest RAM behind an EPT: each test writes page tables
/// into the guest and checks the translation, the #PF error code and the A/D updates.
/// </summary>
public sealed class GuestPageWalkerTests : IDisposable
{
    private const ulong Cr0Pg = 1ul << 31, Cr0Wp = 1ul << 16;
    private const ulong Cr4Pse = 1ul << 4, Cr4Pae = 1ul << 5, Cr4Smep = 1ul << 20, Cr4Smap = 1ul << 21;
    private const ulong EferLma = 1ul << 10, EferNxe = 1ul << 11, RflagsAc = 1ul << 18;
    private const ulong RamBytes = 8 << 20;

    private readonly MachineMemory _machine = new(32 << 20);
    private readonly EptTables _ept;
    private readonly GuestPhysicalMemory _m;

    public GuestPageWalkerTests()
    {
        var owner = new FrameOwner(1);
        _ept = new EptTables(_machine, owner);
        _ept.Map(new GuestPhysicalAddress(0), _machine.AllocateContiguous(owner, RamBytes / 4096), RamBytes / 4096, EptAccess.Read | EptAccess.Write);
        _m = new GuestPhysicalMemory(_machine, _ept.Pointer);
    }

    public void Dispose()
    {
        _ept.Dispose();
        _machine.Dispose();
    }

    private void W32(ulong gpa, uint v) => Assert.True(_m.TryWrite(new GuestPhysicalAddress(gpa), in v));

    private void W64(ulong gpa, ulong v) => Assert.True(_m.TryWrite(new GuestPhysicalAddress(gpa), in v));

    private ulong R64(ulong gpa)
    {
        Assert.True(_m.TryRead(new GuestPhysicalAddress(gpa), out ulong v));
        return v;
    }

    private GuestPagingResult Walk(GuestPagingRegisters r, ulong linear, GuestPagingAccess access, out ulong gpa,
        out PageFaultErrorCode code, GuestPagingPrivilege privilege = GuestPagingPrivilege.Supervisor)
    {
        var result = GuestPageWalker.Translate(_m, r, linear, access, privilege, out GuestPhysicalAddress a, out code, out _);
        gpa = a.Value;
        return result;
    }

    private static GuestPagingRegisters Regs(ulong cr0, ulong cr3, ulong cr4 = 0, ulong efer = 0, ulong rflags = 2) => new(cr0, cr3, cr4, efer, rflags);

    /// <summary>Four-level tables: PML4 0x20000 -> PDPT 0x21000 -> PD 0x22000 -> PT 0x23000, flags per level.</summary>
    private void FourLevel(ulong linear, ulong leaf, ulong pml4Flags = 7, ulong pdptFlags = 7, ulong pdFlags = 7)
    {
        W64(0x20000 + (((linear >> 39) & 0x1FF) * 8), 0x21000 | pml4Flags);
        W64(0x21000 + (((linear >> 30) & 0x1FF) * 8), 0x22000 | pdptFlags);
        W64(0x22000 + (((linear >> 21) & 0x1FF) * 8), 0x23000 | pdFlags);
        W64(0x23000 + (((linear >> 12) & 0x1FF) * 8), leaf);
    }

    [Fact]
    public void Paging_off_is_identity_on_32_bits()
    {
        Assert.Equal(GuestPagingResult.Translated, Walk(Regs(0, 0), 0x1_0012_3456, GuestPagingAccess.Write, out ulong gpa, out _));
        Assert.Equal(0x12_3456ul, gpa);
    }

    [Fact]
    public void Walks_32_bit_paging_with_4k_and_4m_pages_and_honours_write_protect()
    {
        // CR3 = 0x10000; PDE 1 -> PT at 0x11000 (present, writable); PTE 2 -> 0x345000 read-only; PDE 2: 4 MiB page at 0x400000.
        W32(0x10000 + 4, 0x11000 | 3);
        W32(0x11000 + (2 * 4), 0x345000 | 1);
        W32(0x10000 + 8, 0x400000 | 0x83);
        Assert.Equal(GuestPagingResult.Translated, Walk(Regs(Cr0Pg, 0x10000), 0x402123, GuestPagingAccess.Read, out ulong gpa, out _));
        Assert.Equal(0x345123ul, gpa);
        Assert.Equal(GuestPagingResult.Translated, Walk(Regs(Cr0Pg, 0x10000), 0x402123, GuestPagingAccess.Write, out _, out _)); // WP = 0
        Assert.Equal(GuestPagingResult.PageFault, Walk(Regs(Cr0Pg | Cr0Wp, 0x10000), 0x402123, GuestPagingAccess.Write, out _, out var code));
        Assert.Equal(PageFaultErrorCode.Present | PageFaultErrorCode.Write, code);
        Assert.Equal(GuestPagingResult.Translated, Walk(Regs(Cr0Pg, 0x10000, Cr4Pse), 0x812345, GuestPagingAccess.Write, out gpa, out _));
        Assert.Equal(0x412345ul, gpa);
        // Without CR4.PSE the PS bit is ignored and the PDE points at a page table (here: guest page 0x400000, all zero).
        Assert.Equal(GuestPagingResult.PageFault, Walk(Regs(Cr0Pg, 0x10000), 0x812345, GuestPagingAccess.Read, out _, out code));
        Assert.Equal(PageFaultErrorCode.None, code);
        Assert.Equal(GuestPagingResult.PageFault, Walk(Regs(Cr0Pg, 0x10000), 0xC00000, GuestPagingAccess.Read, out _, out _)); // PDE 3 not present
    }

    [Fact]
    public void A_4m_page_takes_address_bits_39_32_from_pde_bits_20_13_and_bit_21_is_reserved()
    {
        W32(0x10000, 0x0040_0083 | (0x12u << 13));
        Assert.Equal(GuestPagingResult.Translated, Walk(Regs(Cr0Pg, 0x10000, Cr4Pse), 0x1234, GuestPagingAccess.Read, out ulong gpa, out _));
        Assert.Equal(0x12_0040_1234ul, gpa);
        W32(0x10000, 0x0040_0083 | (1u << 21));
        Assert.Equal(GuestPagingResult.PageFault, Walk(Regs(Cr0Pg, 0x10000, Cr4Pse), 0x1234, GuestPagingAccess.Read, out _, out var code));
        Assert.Equal(PageFaultErrorCode.Present | PageFaultErrorCode.Reserved, code);
    }

    [Fact]
    public void Walks_pae_paging_and_rejects_reserved_pdpte_bits()
    {
        // CR3 = 0x30020 (32-byte aligned); PDPTE 1 -> PD 0x31000; PDE 0 -> PT 0x32000; PTE 5 -> 0x7000.
        W64(0x30020 + 8, 0x31000 | 1);
        W64(0x31000, 0x32000 | 3);
        W64(0x32000 + (5 * 8), 0x7000 | 3);
        var r = Regs(Cr0Pg, 0x30020, Cr4Pae);
        Assert.Equal(GuestPagingResult.Translated, Walk(r, 0x4000_5ABC, GuestPagingAccess.Write, out ulong gpa, out _));
        Assert.Equal(0x7ABCul, gpa);
        W64(0x30020 + 8, 0x31000 | 3); // R/W is reserved in a PAE PDPTE (SDM table 4-8)
        Assert.Equal(GuestPagingResult.PageFault, Walk(r, 0x4000_5ABC, GuestPagingAccess.Read, out _, out var code));
        Assert.Equal(PageFaultErrorCode.Present | PageFaultErrorCode.Reserved, code);
    }

    [Fact]
    public void Walks_four_level_paging_with_2m_and_1g_pages_and_rejects_non_canonical_addresses()
    {
        W64(0x20000, 0x21000 | 3);
        W64(0x21000, 0x22000 | 3);
        W64(0x22000 + (3 * 8), 0x600000 | 0x83);
        var r = Regs(Cr0Pg, 0x20000, Cr4Pae, EferLma);
        Assert.Equal(GuestPagingResult.Translated, Walk(r, 0x6ABCDE, GuestPagingAccess.Write, out ulong gpa, out _));
        Assert.Equal(0x6ABCDEul, gpa);
        Assert.Equal(GuestPagingResult.NonCanonical, Walk(r, 0x0000_8000_0000_0000, GuestPagingAccess.Read, out _, out _));
        Assert.Equal(GuestPagingResult.PageFault, Walk(r, 0xFFFF_8000_0000_0000, GuestPagingAccess.Read, out _, out _)); // canonical, absent
        Assert.Equal(GuestPagingResult.NonCanonical, Walk(r, 0x0001_0000_0000_0000, GuestPagingAccess.Read, out _, out _));
        // 1 GiB page: PDPTE 1 maps [1 GiB, 2 GiB) at 0x4000_0000; bits 29:13 must be zero.
        W64(0x21000 + 8, 0x4000_0000 | 0x83);
        Assert.Equal(GuestPagingResult.Translated, Walk(r, 0x4123_4567, GuestPagingAccess.Read, out gpa, out _));
        Assert.Equal(0x4123_4567ul, gpa);
        W64(0x21000 + 8, 0x4000_0000 | 0x83 | (1ul << 13));
        Assert.Equal(GuestPagingResult.PageFault, Walk(r, 0x4123_4567, GuestPagingAccess.Read, out _, out var code));
        Assert.Equal(PageFaultErrorCode.Present | PageFaultErrorCode.Reserved, code);
    }

    [Fact]
    public void Sets_accessed_bits_on_the_way_and_dirty_on_the_leaf_for_a_write()
    {
        FourLevel(0x5000, 0x9000 | 3, 3, 3, 3);
        var r = Regs(Cr0Pg, 0x20000, Cr4Pae, EferLma);
        Assert.Equal(GuestPagingResult.Translated, Walk(r, 0x5000, GuestPagingAccess.Read, out _, out _));
        Assert.Equal(0x21000ul | 0x23, R64(0x20000));
        Assert.Equal(0x22000ul | 0x23, R64(0x21000));
        Assert.Equal(0x23000ul | 0x23, R64(0x22000));
        Assert.Equal(0x9000ul | 0x23, R64(0x23000 + (5 * 8)));
        Assert.Equal(GuestPagingResult.Translated, Walk(r, 0x5000, GuestPagingAccess.Write, out _, out _));
        Assert.Equal(0x9000ul | 0x63, R64(0x23000 + (5 * 8)));
    }

    [Fact]
    public void User_accesses_need_the_user_bit_at_every_level_and_write_needs_rw_whatever_wp_says()
    {
        FourLevel(0x5000, 0x9000 | 7, pdFlags: 3);
        var r = Regs(Cr0Pg, 0x20000, Cr4Pae, EferLma);
        Assert.Equal(GuestPagingResult.PageFault, Walk(r, 0x5000, GuestPagingAccess.Read, out _, out var code, GuestPagingPrivilege.User));
        Assert.Equal(PageFaultErrorCode.Present | PageFaultErrorCode.User, code);
        FourLevel(0x5000, 0x9000 | 5);
        Assert.Equal(GuestPagingResult.Translated, Walk(r, 0x5000, GuestPagingAccess.Read, out _, out _, GuestPagingPrivilege.User));
        Assert.Equal(GuestPagingResult.PageFault, Walk(r, 0x5000, GuestPagingAccess.Write, out _, out code, GuestPagingPrivilege.User));
        Assert.Equal(PageFaultErrorCode.Present | PageFaultErrorCode.Write | PageFaultErrorCode.User, code);
        Assert.Equal(GuestPagingResult.Translated, Walk(r, 0x5000, GuestPagingAccess.Write, out _, out _)); // supervisor, WP = 0
    }

    [Fact]
    public void Execute_disable_needs_nxe_and_is_reserved_without_it()
    {
        FourLevel(0x5000, 0x9000 | 3 | (1ul << 63));
        Assert.Equal(GuestPagingResult.PageFault,
            Walk(Regs(Cr0Pg, 0x20000, Cr4Pae, EferLma | EferNxe), 0x5000, GuestPagingAccess.Execute, out _, out var code));
        Assert.Equal(PageFaultErrorCode.Present | PageFaultErrorCode.InstructionFetch, code);
        Assert.Equal(GuestPagingResult.Translated, Walk(Regs(Cr0Pg, 0x20000, Cr4Pae, EferLma | EferNxe), 0x5000, GuestPagingAccess.Read, out _, out _));
        Assert.Equal(GuestPagingResult.PageFault, Walk(Regs(Cr0Pg, 0x20000, Cr4Pae, EferLma), 0x5000, GuestPagingAccess.Read, out _, out code));
        Assert.Equal(PageFaultErrorCode.Present | PageFaultErrorCode.Reserved, code);
    }

    [Fact]
    public void Smep_stops_supervisor_fetches_and_smap_supervisor_data_accesses_to_user_pages()
    {
        FourLevel(0x5000, 0x9000 | 7);
        ulong cr4 = Cr4Pae | Cr4Smep | Cr4Smap;
        Assert.Equal(GuestPagingResult.PageFault, Walk(Regs(Cr0Pg, 0x20000, cr4, EferLma), 0x5000, GuestPagingAccess.Execute, out _, out var code));
        Assert.Equal(PageFaultErrorCode.Present | PageFaultErrorCode.InstructionFetch, code);
        Assert.Equal(GuestPagingResult.PageFault, Walk(Regs(Cr0Pg, 0x20000, cr4, EferLma), 0x5000, GuestPagingAccess.Read, out _, out code));
        Assert.Equal(PageFaultErrorCode.Present, code);
        // RFLAGS.AC lifts SMAP for explicit accesses only (SDM Vol. 3A §4.6.1).
        Assert.Equal(GuestPagingResult.Translated, Walk(Regs(Cr0Pg, 0x20000, cr4, EferLma, RflagsAc | 2), 0x5000, GuestPagingAccess.Write, out _, out _));
        Assert.Equal(GuestPagingResult.PageFault,
            Walk(Regs(Cr0Pg, 0x20000, cr4, EferLma, RflagsAc | 2), 0x5000, GuestPagingAccess.Read, out _, out _, GuestPagingPrivilege.ImplicitSupervisor));
        Assert.Equal(GuestPagingResult.Translated, Walk(Regs(Cr0Pg, 0x20000, cr4, EferLma), 0x5000, GuestPagingAccess.Execute, out _, out _, GuestPagingPrivilege.User));
    }

    [Fact]
    public void A_table_outside_the_domain_ends_the_walk_with_the_ept_fault()
    {
        var r = Regs(Cr0Pg, 0x7FFF_F000);
        var result = GuestPageWalker.Translate(_m, r, 0, GuestPagingAccess.Read, GuestPagingPrivilege.Supervisor, out _, out _, out GuestMemoryFault fault);
        Assert.Equal(GuestPagingResult.StructureFault, result);
        Assert.Equal(EptTranslationStatus.Violation, fault.Status);
        Assert.Equal(new GuestPhysicalAddress(0x7FFF_F000), fault.Address);
        // A/D updates need write access: a read-only table page ends the walk too.
        MachineFrameNumber readOnly = _machine.AllocateFrame(new FrameOwner(1));
        BitConverter.TryWriteBytes(_machine.GetFrame(readOnly), 0x21000ul | 3); // PML4E 0, A clear
        _ept.Unmap(new GuestPhysicalAddress(0x20000), 1);
        _ept.Map(new GuestPhysicalAddress(0x20000), readOnly, 1, EptAccess.Read);
        _m.InvalidateSingleContext();
        Assert.Equal(GuestPagingResult.StructureFault,
            GuestPageWalker.Translate(_m, Regs(Cr0Pg, 0x20000, Cr4Pae, EferLma), 0, GuestPagingAccess.Read, GuestPagingPrivilege.Supervisor, out _, out _, out fault));
        Assert.Equal(new GuestPhysicalAddress(0x20000), fault.Address);
    }
}
