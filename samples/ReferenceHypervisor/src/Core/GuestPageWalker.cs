using VmmKit.Ept;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// Walks a guest's own page tables (SDM Vol. 3A §4.3 32-bit paging, §4.4 PAE, §4.5 4-level) to
/// translate a linear address for the hypervisor's copies. Supervisor access: only P, R/W (with
/// CR0.WP) and the page sizes matter; A/D bits are not set (the hypervisor's copy is not a guest
/// access). Every table read goes through the EPT.
/// </summary>
internal static class GuestPageWalker
{
    private const ulong Present = 1, Writable = 2, PageSize = 0x80;
    private const ulong Cr0Wp = 1ul << 16, Cr4Pse = 1ul << 4, Cr4Pae = 1ul << 5, EferLma = 1ul << 10;
    private const ulong AddressMask = 0x000F_FFFF_FFFF_F000ul;

    /// <summary>Translates <paramref name="linear"/>; false when a level is not present or not writable for a write.</summary>
    public static bool TryTranslate(GuestPhysicalMemory memory, ulong cr0, ulong cr3, ulong cr4, ulong efer, ulong linear, bool write, out ulong gpa)
    {
        gpa = 0;
        bool checkWrite = write && (cr0 & Cr0Wp) != 0;
        if ((cr4 & Cr4Pae) == 0)
        {
            // 32-bit paging: 10/10/12, 4 MiB pages with CR4.PSE.
            if (!Read32(memory, (cr3 & 0xFFFF_F000) + (((linear >> 22) & 0x3FF) * 4), out uint pde) || !Allowed(pde, checkWrite))
                return false;
            if ((pde & PageSize) != 0 && (cr4 & Cr4Pse) != 0)
            {
                gpa = (pde & 0xFFC0_0000u) | ((ulong)(pde >> 13) & 0xFF) << 32 | (linear & 0x3F_FFFF);
                return true;
            }

            if (!Read32(memory, (pde & 0xFFFF_F000u) + (((linear >> 12) & 0x3FF) * 4), out uint pte) || !Allowed(pte, checkWrite))
                return false;
            gpa = (pte & 0xFFFF_F000u) | (linear & 0xFFF);
            return true;
        }

        int levels = (efer & EferLma) != 0 ? 4 : 3;
        ulong table = levels == 4 ? cr3 & AddressMask : cr3 & 0xFFFF_FFE0;
        for (int level = levels; level >= 1; level--)
        {
            int shift = 12 + (9 * (level - 1));
            ulong index = levels == 3 && level == 3 ? (linear >> 30) & 3 : (linear >> shift) & 0x1FF;
            if (!Read64(memory, table + (index * 8), out ulong entry) || (entry & Present) == 0)
                return false;
            bool isPdpte32 = levels == 3 && level == 3;
            if (!isPdpte32 && checkWrite && (entry & Writable) == 0)
                return false;
            if (!isPdpte32 && level is 2 or 3 && (entry & PageSize) != 0)
            {
                ulong size = 1ul << shift;
                gpa = (entry & AddressMask & ~(size - 1)) | (linear & (size - 1));
                return true;
            }

            table = entry & AddressMask;
        }

        gpa = table | (linear & 0xFFF);
        return true;
    }

    private static bool Allowed(uint entry, bool checkWrite) => (entry & Present) != 0 && (!checkWrite || (entry & Writable) != 0);

    private static bool Read32(GuestPhysicalMemory memory, ulong gpa, out uint value) =>
        memory.TryRead(new GuestPhysicalAddress(gpa), out value);

    private static bool Read64(GuestPhysicalMemory memory, ulong gpa, out ulong value) =>
        memory.TryRead(new GuestPhysicalAddress(gpa), out value);
}
