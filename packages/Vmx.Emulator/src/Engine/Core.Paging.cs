namespace VmmKit.Vmx.Emulator.Engine;

/// <summary>Guest paging: linear to guest-physical (SDM Vol. 3A §4.3 32-bit, §4.4 PAE, §4.5 4-level).</summary>
internal sealed unsafe partial class Core
{
    private const ulong PtePresent = 1, PteWrite = 2, PteUser = 4, PteAccessed = 0x20, PteDirty = 0x40, PtePageSize = 0x80;
    private const ulong PteNx = 1UL << 63;
    private const ulong AddrMask = 0x000F_FFFF_FFFF_F000UL;

    private bool PageWalk(ulong lin, MemoryAccess access, out ulong gpa)
    {
        ref CpuState s = ref S;
        gpa = 0;
        bool pae = (s.Cr4 & (1UL << 5)) != 0;
        bool lma = (s.Efer & (1UL << 10)) != 0;
        bool user = (s.Ss.AccessRights >> 5 & 3) == 3;
        bool write = access == MemoryAccess.Write;
        bool fetch = access == MemoryAccess.Execute;
        bool nxe = (s.Efer & (1UL << 11)) != 0;
        ulong allowWrite = PteWrite, allowUser = PteUser, nx = 0;
        int levels;
        ulong table;
        int entrySize = pae ? 8 : 4;
        if (lma)
        {
            levels = 4;
            table = s.Cr3 & AddrMask;
            // SDM §3.3.7.1: linear addresses must be canonical.
            if ((ulong)(((long)lin << 16) >> 16) != lin) { RaiseException(ExceptionVector.GP, 0); return false; }
        }
        else if (pae)
        {
            ulong pdpteAddr = (s.Cr3 & 0xFFFF_FFE0UL) + ((lin >> 30) & 3) * 8;
            if (!ReadPaging(lin, pdpteAddr, 8, out ulong pdpte)) return false;
            if ((pdpte & PtePresent) == 0) return PageFault(lin, access, user, false);
            levels = 2;
            table = pdpte & AddrMask;
        }
        else
        {
            levels = 2;
            table = s.Cr3 & 0xFFFF_F000UL;
        }
        for (int level = levels; level >= 1; level--)
        {
            int shift = pae || lma ? 12 + 9 * (level - 1) : 12 + 10 * (level - 1);
            ulong index = pae || lma ? (lin >> shift) & 0x1FF : (lin >> shift) & 0x3FF;
            ulong entryAddr = table + index * (ulong)entrySize;
            if (!ReadPaging(lin, entryAddr, entrySize, out ulong entry)) return false;
            if ((entry & PtePresent) == 0) return PageFault(lin, access, user, false);
            allowWrite &= entry;
            allowUser &= entry;
            if (nxe && pae) nx |= entry & PteNx;
            bool large = level > 1 && (entry & PtePageSize) != 0 && (level < 4) && (pae || lma || (s.Cr4 & (1UL << 4)) != 0);
            if (level == 1 || large)
            {
                // Permission checks (SDM §4.6): user accesses need U/S everywhere; writes need R/W
                // everywhere, for supervisor only when CR0.WP = 1; fetches need XD clear.
                if (user && allowUser == 0) return PageFault(lin, access, user, true);
                if (write && allowWrite == 0 && (user || (s.Cr0 & (1UL << 16)) != 0)) return PageFault(lin, access, user, true);
                if (fetch && nx != 0) return PageFault(lin, access, user, true);
                ulong frame;
                if (large)
                {
                    ulong pageMask = (1UL << shift) - 1;
                    frame = pae || lma ? entry & AddrMask & ~pageMask : ((entry & 0xFFC0_0000UL) | ((entry & 0x1FE000UL) << 19));
                    gpa = frame | (lin & pageMask);
                }
                else
                {
                    frame = entry & (pae || lma ? AddrMask : 0xFFFF_F000UL);
                    gpa = frame | (lin & 0xFFF);
                }
                ulong want = PteAccessed | (write ? PteDirty : 0);
                if ((entry & want) != want && !WritePaging(lin, entryAddr, entrySize, entry | want)) return false;
                return true;
            }
            if ((entry & PteAccessed) == 0 && !WritePaging(lin, entryAddr, entrySize, entry | PteAccessed)) return false;
            table = entry & (pae || lma ? AddrMask : 0xFFFF_F000UL);
        }
        return PageFault(lin, access, user, false);
    }

    private bool PageFault(ulong lin, MemoryAccess access, bool user, bool present)
    {
        // SDM §4.7: error code P(0) W/R(1) U/S(2) RSVD(3) I/D(4).
        uint code = (present ? 1u : 0) | (access == MemoryAccess.Write ? 2u : 0) | (user ? 4u : 0)
            | (access == MemoryAccess.Execute ? 16u : 0);
        RaiseException(ExceptionVector.PF, code);
        Event.GuestLinear = lin;
        return false;
    }

    private bool ReadPaging(ulong lin, ulong gpa, int size, out ulong value)
    {
        value = 0;
        byte* page = Pages.GetHostPage(gpa, MemoryAccess.Read, out ulong violation, out bool misconfig);
        if (page == null)
        {
            RaiseEptFault(lin, gpa, MemoryAccess.Read, violation, misconfig);
            Event.Qualification &= ~(1UL << 8); // access to a paging-structure entry
            return false;
        }
        byte* p = page + (gpa & 0xFFF);
        value = size == 8 ? *(ulong*)p : *(uint*)p;
        return true;
    }

    private bool WritePaging(ulong lin, ulong gpa, int size, ulong value)
    {
        byte* page = Pages.GetHostPage(gpa, MemoryAccess.Write, out ulong violation, out bool misconfig);
        if (page == null)
        {
            RaiseEptFault(lin, gpa, MemoryAccess.Write, violation, misconfig);
            Event.Qualification &= ~(1UL << 8);
            return false;
        }
        byte* p = page + (gpa & 0xFFF);
        if (size == 8) *(ulong*)p = value; else *(uint*)p = (uint)value;
        if (IsCodeFrame(gpa & ~0xFFFUL)) { InvalidateCodeFrame(gpa & ~0xFFFUL); StopBlock = 1; }
        return true;
    }
}
