namespace VmmKit.Ept.Tests;

/// <summary>
/// With EPT accessed and dirty flags enabled (EPTP bit 6), processor accesses to guest paging-structure entries are
/// treated as writes with regard to EPT violations (SDM Vol. 3C §29.3.3.2) and set the EPT dirty flag of the page
/// holding them (§29.3.5); such a violation sets bits 0 and 1 of the qualification (Table 28-7, note 1), and bit 7
/// with bit 8 clear (an access to a guest paging-structure entry). Found by the Bochs EPT differential
/// (VmmKit.Vmx.Tests.BochsEptWalkerTests, the "paged guest" cases).
/// </summary>
public sealed class GuestPagingStructuresAccessedDirtyTests : IDisposable
{
    private const ulong Cr0Pg = 1ul << 31, Cr4Pse = 1ul << 4;
    private const ulong PageDirectory = 0x5000;
    private const ulong EptDirty = 1ul << 9, EptAccessed = 1ul << 8;

    private readonly MachineMemory _machine = new(16 << 20);
    private readonly FrameOwner _owner = new(1);

    public void Dispose() => _machine.Dispose();

    private (EptTables Ept, GuestPhysicalMemory Memory) Guest(bool accessedDirty, EptAccess pageDirectoryRights, uint pde = 0xE7)
    {
        var ept = new EptTables(_machine, _owner, accessedDirty);
        ept.Map(new GuestPhysicalAddress(0), _machine.AllocateContiguous(_owner, 16), 16, EptAccess.ReadWriteExecute);
        ept.Protect(new GuestPhysicalAddress(PageDirectory), 1, pageDirectoryRights);
        var memory = new GuestPhysicalMemory(_machine, ept.Pointer);
        // 32-bit paging: PDE 0 maps 4 MiB at 0 with A and D already set, so the walk itself writes nothing.
        ept.TryLookup(new GuestFrameNumber(PageDirectory >> 12), out MachineFrameNumber frame, out _);
        BitConverter.TryWriteBytes(_machine.GetFrame(frame), pde);
        return (ept, memory);
    }

    private static GuestPagingResult Walk(GuestPhysicalMemory memory, out GuestMemoryFault fault) =>
        GuestPageWalker.Translate(memory, new GuestPagingRegisters(Cr0Pg | 1, PageDirectory, Cr4Pse, 0, 2), 0x1000,
            GuestPagingAccess.Read, GuestPagingPrivilege.Supervisor, out _, out _, out fault);

    [Fact]
    public void A_read_only_page_directory_is_an_ept_violation_when_ept_accessed_dirty_flags_are_enabled()
    {
        var (ept, memory) = Guest(accessedDirty: true, EptAccess.Read | EptAccess.Execute);
        using (ept)
        {
            Assert.Equal(GuestPagingResult.StructureFault, Walk(memory, out GuestMemoryFault fault));
            Assert.Equal(EptTranslationStatus.Violation, fault.Status);
            Assert.Equal(new GuestPhysicalAddress(PageDirectory), fault.Address);
            var q = fault.Qualification;
            Assert.True(q.WasRead && q.WasWrite && !q.WasInstructionFetch, q.ToString());
            Assert.Equal(EptAccess.Read | EptAccess.Execute, q.Permissions);
            Assert.True(q.GuestLinearAddressValid, q.ToString());
            Assert.False(q.IsTranslationOfLinearAddress, q.ToString());
        }
    }

    [Fact]
    public void A_read_only_page_directory_is_read_when_ept_accessed_dirty_flags_are_disabled()
    {
        var (ept, memory) = Guest(accessedDirty: false, EptAccess.Read | EptAccess.Execute);
        using (ept)
        {
            Assert.Equal(GuestPagingResult.Translated, Walk(memory, out _));
        }
    }

    [Fact]
    public void A_walk_sets_the_ept_dirty_flag_of_the_page_directory()
    {
        var (ept, memory) = Guest(accessedDirty: true, EptAccess.ReadWriteExecute);
        using (ept)
        {
            Assert.Equal(GuestPagingResult.Translated, Walk(memory, out _));
            ulong leaf = PteOf(ept, PageDirectory);
            Assert.Equal(EptAccessed | EptDirty, leaf & (EptAccessed | EptDirty));
        }
    }

    [Fact]
    public void The_accessed_flag_update_in_a_read_only_page_directory_is_a_paging_structure_write_violation()
    {
        // §29.3.3.2: the processor's A/D updates of guest paging structures are data writes; Table 28-7: bit 7 set
        // (the linear-address field is valid for every violation but PDPTE loads), bit 8 clear (a paging-structure access).
        var (ept, memory) = Guest(accessedDirty: false, EptAccess.Read, pde: 0x87);
        using (ept)
        {
            Assert.Equal(GuestPagingResult.StructureFault, Walk(memory, out GuestMemoryFault fault));
            Assert.Equal(new GuestPhysicalAddress(PageDirectory), fault.Address);
            var q = fault.Qualification;
            Assert.True(q.WasWrite && !q.WasInstructionFetch, q.ToString());
            Assert.Equal(EptAccess.Read, q.Permissions);
            Assert.True(q.GuestLinearAddressValid, q.ToString());
            Assert.False(q.IsTranslationOfLinearAddress, q.ToString());
        }
    }

    [Fact]
    public void Pae_pdpte_loads_are_reads_even_with_ept_accessed_dirty_flags()
    {
        // §29.3.3.2: loads of the PAE PDPTEs are treated as reads and cause no EPT violation for a page that is not
        // writable; a violation there is the one case without a valid guest-linear address (Table 28-7 bit 7 clear).
        var (ept, memory) = Guest(accessedDirty: true, EptAccess.Read);
        using (ept)
        {
            const ulong pageDirectory = 0x6000;
            ept.TryLookup(new GuestFrameNumber(PageDirectory >> 12), out MachineFrameNumber pdpt, out _);
            BitConverter.TryWriteBytes(_machine.GetFrame(pdpt), pageDirectory | 1);
            ept.TryLookup(new GuestFrameNumber(pageDirectory >> 12), out MachineFrameNumber pd, out _);
            BitConverter.TryWriteBytes(_machine.GetFrame(pd), 0xE3ul); // P RW A D PS: 2 MiB at 0
            var registers = new GuestPagingRegisters(Cr0Pg | 1, PageDirectory, 1ul << 5, 0, 2);
            Assert.Equal(GuestPagingResult.Translated, GuestPageWalker.Translate(memory, registers, 0x1000,
                GuestPagingAccess.Read, GuestPagingPrivilege.Supervisor, out GuestPhysicalAddress gpa, out _, out _));
            Assert.Equal(0x1000ul, gpa.Value);

            ept.Protect(new GuestPhysicalAddress(PageDirectory), 1, EptAccess.None);
            GuestPhysicalMemory.InvalidateSingleContext(_machine, ept.Pointer);
            Assert.Equal(GuestPagingResult.StructureFault, GuestPageWalker.Translate(memory, registers, 0x1000,
                GuestPagingAccess.Read, GuestPagingPrivilege.Supervisor, out _, out _, out GuestMemoryFault fault));
            Assert.True(fault.Qualification.WasRead && !fault.Qualification.WasWrite, fault.ToString());
            Assert.False(fault.Qualification.GuestLinearAddressValid, fault.ToString());
        }
    }

    // The EPT PTE mapping gpa, read from the tables the EPTP names (4-level walk, 4 KiB leaf).
    private ulong PteOf(EptTables ept, ulong gpa)
    {
        ulong table = ept.Pointer.Root.Address;
        for (int level = 4; level >= 1; level--)
        {
            int index = (int)((gpa >> (12 + (9 * (level - 1)))) & 511);
            ulong entry = BitConverter.ToUInt64(_machine.GetFrame(new MachineFrameNumber(table >> 12)).Slice(index * 8, 8));
            if (level == 1)
                return entry;
            table = entry & 0x000F_FFFF_FFFF_F000;
        }

        return 0;
    }
}
