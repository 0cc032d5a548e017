using static VmmKit.Vmx.Emulator.Engine.ControlBits;

namespace VmmKit.Vmx.Emulator.Engine;

/// <summary>
/// Guest paging: linear to guest-physical (SDM Vol. 3A §4.3 32-bit, §4.4 PAE, §4.5 4-level), access rights
/// (§4.6: U/S, R/W with CR0.WP, XD with EFER.NXE, SMEP, SMAP with RFLAGS.AC and implicit supervisor accesses),
/// reserved-bit checks (§4.7: RSVD), A/D bits (§4.8) and the #PF error code (§4.7). Every paging-structure access
/// goes through the page source (the EPT: the 2-D walk); an EPT violation there reports the guest-linear address with
/// bit 8 of the qualification clear (SDM Vol. 3C §28.2.1 table 28-7).
/// </summary>
internal sealed unsafe partial class Core
{
    private const ulong PtePresent = 1, PteWrite = 2, PteUser = 4, PteAccessed = 0x20, PteDirty = 0x40, PtePageSize = 0x80;
    private const ulong PteNx = 1UL << 63;
    private const ulong AddrMask = 0x000F_FFFF_FFFF_F000UL;

    /// <summary>
    /// Set while the processor makes implicit supervisor-mode accesses (GDT/LDT/IDT/TSS reads, the stacks of event
    /// delivery to CPL 0): they are checked as supervisor accesses at any CPL and never fill the software TLB.
    /// </summary>
    public bool ImplicitSupervisor;

    /// <summary>#PF error-code bits (SDM Vol. 3A §4.7, figure 4-12).</summary>
    public const uint PfPresent = 1, PfWrite = 2, PfUser = 4, PfReserved = 8, PfFetch = 16;

    private bool PageWalk(ulong lin, MemoryAccess access, out ulong gpa)
    {
        ref CpuState s = ref S;
        gpa = 0;
        bool pae = (s.Cr4 & Cr4Pae) != 0;
        bool lma = (s.Efer & EferLma) != 0;
        bool user = !ImplicitSupervisor && Cpl == 3;
        bool write = access == MemoryAccess.Write;
        bool fetch = access == MemoryAccess.Execute;
        bool nxe = (s.Efer & EferNxe) != 0;
        // Bits 51:M of a 64-bit entry are reserved; the emulated MAXPHYADDR is 52 so none are. XD is reserved without NXE.
        ulong rsvdHigh = nxe ? 0 : PteNx;
        ulong allowWrite = PteWrite, allowUser = PteUser, nx = 0;
        int levels;
        ulong table;
        int entrySize = pae ? 8 : 4;
        if (lma)
        {
            levels = 4;
            table = s.Cr3 & AddrMask;
            // SDM Vol. 3A §3.3.7.1: linear addresses must be canonical (#GP, or #SS for stack references).
            if ((ulong)(((long)lin << 16) >> 16) != lin) { RaiseException(ExceptionVector.GP, 0); return false; }
        }
        else if (pae)
        {
            // SDM Vol. 3A §4.4.1: the four PDPTEs (read here on every walk rather than cached at MOV CR3).
            ulong pdpteAddr = (s.Cr3 & 0xFFFF_FFE0UL) + ((lin >> 30) & 3) * 8;
            if (!ReadPaging(lin, pdpteAddr, 8, out ulong pdpte)) return false;
            if ((pdpte & PtePresent) == 0) return PageFault(lin, access, user, 0);
            if ((pdpte & (0x1E6UL | PteNx)) != 0) return PageFault(lin, access, user, PfPresent | PfReserved);
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
            if ((entry & PtePresent) == 0) return PageFault(lin, access, user, 0);
            bool large = level > 1 && (entry & PtePageSize) != 0 && (pae || lma || (s.Cr4 & Cr4Pse) != 0);
            if (pae || lma)
            {
                // Reserved bits: XD without NXE; PS in a PML4E; bits 20:13 (2 MiB) or 29:13 (1 GiB) of a large page.
                ulong rsvd = rsvdHigh;
                if (level == 4) rsvd |= PtePageSize;
                if (large) rsvd |= level == 2 ? 0x1F_E000UL : 0x3FFF_E000UL;
                if ((entry & rsvd) != 0) return PageFault(lin, access, user, PfPresent | PfReserved);
            }
            else if (large && (entry & (1UL << 21)) != 0)
            {
                return PageFault(lin, access, user, PfPresent | PfReserved); // 4 MiB PDE bit 21 (SDM table 4-4)
            }
            allowWrite &= entry;
            allowUser &= entry;
            if (nxe && (pae || lma)) nx |= entry & PteNx;
            if (level == 1 || large)
            {
                if (!AccessAllowed(access, user, allowWrite != 0, allowUser != 0, nx != 0))
                {
                    return PageFault(lin, access, user, PfPresent);
                }
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
        return PageFault(lin, access, user, 0);
    }

    /// <summary>SDM Vol. 3A §4.6.1: the access rights of a translation for one access.</summary>
    private bool AccessAllowed(MemoryAccess access, bool user, bool writable, bool userPage, bool noExecute)
    {
        ref CpuState s = ref S;
        if (access == MemoryAccess.Execute)
        {
            if (noExecute) return false;
            if (user) return userPage;
            return !(userPage && (s.Cr4 & Cr4Smep) != 0); // SMEP: no supervisor fetch from a user page
        }
        if (user)
        {
            return userPage && (access != MemoryAccess.Write || writable);
        }
        // SMAP: a supervisor data access to a user page faults when it is implicit or RFLAGS.AC = 0 (CPL 3 explicit
        // accesses count as user accesses above).
        if (userPage && (s.Cr4 & Cr4Smap) != 0 && (ImplicitSupervisor || (s.Rflags & RflagsBits.AC) == 0)) return false;
        return access != MemoryAccess.Write || writable || (s.Cr0 & Cr0Wp) == 0;
    }

    private bool PageFault(ulong lin, MemoryAccess access, bool user, uint bits)
    {
        ref CpuState s = ref S;
        // SDM §4.7: P(0) W/R(1) U/S(2) RSVD(3) I/D(4); I/D only with SMEP, or with PAE paging and NXE.
        bool idReported = (s.Cr4 & Cr4Smep) != 0 || ((s.Cr4 & Cr4Pae) != 0 && (s.Efer & EferNxe) != 0);
        uint code = bits | (access == MemoryAccess.Write ? PfWrite : 0) | (user ? PfUser : 0)
            | (access == MemoryAccess.Execute && idReported ? PfFetch : 0);
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
