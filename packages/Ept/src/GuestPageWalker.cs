using System.Runtime.CompilerServices;

namespace VmmKit.Ept;

/// <summary>
/// Guest paging: translates a linear address to a guest-physical address by walking the guest's own page tables as
/// the processor does — 32-bit paging (SDM Vol. 3A §4.3, with CR4.PSE 4 MiB pages), PAE paging (§4.4) and 4-level
/// paging (§4.5, 2 MiB and 1 GiB pages) — with the access rights of §4.6 (U/S, R/W with CR0.WP, XD with EFER.NXE,
/// SMEP, SMAP with RFLAGS.AC), the reserved-bit checks and #PF error code of §4.7 and the accessed/dirty updates of
/// §4.8. Every paging-structure access goes through an <see cref="IGuestPagingStructures"/> (the EPT: the 2-D walk).
/// The emulated processor walks with it on every software-TLB miss; a hypervisor walks with it to copy hypercall
/// arguments (VmmKit.Hypercall's <c>GuestLinearMemory</c>).
/// </summary>
/// <remarks>
/// The PAE PDPTEs are read on every walk rather than cached at MOV CR3 (§4.4.1). MAXPHYADDR is taken as 52, so only
/// the architecturally fixed reserved bits are checked. 5-level paging (CR4.LA57) is not modelled.
/// </remarks>
public static class GuestPageWalker
{
    private const ulong Present = 1, Writable = 2, UserBit = 4, Accessed = 0x20, Dirty = 0x40, PageSize = 0x80;
    private const ulong ExecuteDisable = 1UL << 63;
    private const ulong AddressMask = 0x000F_FFFF_FFFF_F000UL;
    private const ulong Cr0Wp = 1UL << 16, Cr0Pg = 1UL << 31;
    private const ulong Cr4Pse = 1UL << 4, Cr4Pae = 1UL << 5, Cr4Smep = 1UL << 20, Cr4Smap = 1UL << 21;
    private const ulong EferLma = 1UL << 10, EferNxe = 1UL << 11;
    private const ulong RflagsAc = 1UL << 18;

    /// <summary>
    /// Translates <paramref name="linear"/> for one access. With CR0.PG = 0 the (32-bit) linear address is the
    /// guest-physical address. Outside 4-level paging linear addresses are 32 bits wide and the upper bits are ignored.
    /// </summary>
    /// <typeparam name="TStructures">The paging-structure access, a struct so the walk is specialized for it.</typeparam>
    /// <param name="structures">Reads and updates the entries; on <see cref="GuestPagingResult.StructureFault"/> it holds the failure.</param>
    /// <param name="registers">The guest's CR0, CR3, CR4, EFER and RFLAGS.</param>
    /// <param name="linear">The linear address.</param>
    /// <param name="access">Read, write or fetch.</param>
    /// <param name="privilege">Supervisor, user or implicit supervisor.</param>
    /// <param name="gpa">The guest-physical address when translated.</param>
    /// <param name="errorCode">The #PF error code when the result is <see cref="GuestPagingResult.PageFault"/>.</param>
    /// <returns>How the walk ended.</returns>
    public static GuestPagingResult Translate<TStructures>(ref TStructures structures, in GuestPagingRegisters registers, ulong linear,
        GuestPagingAccess access, GuestPagingPrivilege privilege, out GuestPhysicalAddress gpa, out PageFaultErrorCode errorCode)
        where TStructures : struct, IGuestPagingStructures
    {
        gpa = default;
        errorCode = PageFaultErrorCode.None;
        ulong cr4 = registers.Cr4, efer = registers.Efer;
        bool lma = (efer & EferLma) != 0;
        if ((registers.Cr0 & Cr0Pg) == 0)
        {
            gpa = new GuestPhysicalAddress(linear & 0xFFFF_FFFFUL);
            return GuestPagingResult.Translated;
        }

        bool pae = lma || (cr4 & Cr4Pae) != 0;
        bool user = privilege == GuestPagingPrivilege.User;
        bool nxe = pae && (efer & EferNxe) != 0;
        // XD is reserved in every PAE/4-level entry without EFER.NXE (§4.4.2, §4.5.4).
        ulong reservedHigh = (efer & EferNxe) != 0 ? 0 : ExecuteDisable;
        int levels;
        ulong table;
        if (lma)
        {
            // §3.3.7.1: bits 63:47 of a linear address must be equal.
            if ((ulong)(((long)linear << 16) >> 16) != linear)
                return GuestPagingResult.NonCanonical;
            levels = 4;
            table = registers.Cr3 & AddressMask;
        }
        else if (pae)
        {
            linear &= 0xFFFF_FFFFUL;
            // §4.4.1: CR3 bits 31:5 locate the four PDPTEs; P, PWT, PCD and the address are all a PDPTE has.
            var pdpteAddress = new GuestPhysicalAddress((registers.Cr3 & 0xFFFF_FFE0UL) + ((linear >> 30) & 3) * 8);
            // §29.3.3.2: PDPTE loads are EPT reads even when other paging-structure accesses count as writes; the
            // type test is resolved when the walk is specialized for the struct.
            bool read = typeof(TStructures) == typeof(GuestPhysicalPagingStructures)
                ? Unsafe.As<TStructures, GuestPhysicalPagingStructures>(ref structures).TryReadPdpte(pdpteAddress, out ulong pdpte)
                : structures.TryReadEntry(pdpteAddress, 8, out pdpte);
            if (!read)
                return GuestPagingResult.StructureFault;
            if ((pdpte & Present) == 0)
                return Fault(registers, access, user, PageFaultErrorCode.None, out errorCode);
            if ((pdpte & (0x1E6UL | ExecuteDisable)) != 0)
                return Fault(registers, access, user, PageFaultErrorCode.Present | PageFaultErrorCode.Reserved, out errorCode);
            levels = 2;
            table = pdpte & AddressMask;
        }
        else
        {
            linear &= 0xFFFF_FFFFUL;
            levels = 2;
            table = registers.Cr3 & 0xFFFF_F000UL;
        }

        int entrySize = pae ? 8 : 4;
        ulong writable = Writable, userPage = UserBit, noExecute = 0;
        for (int level = levels; level >= 1; level--)
        {
            int shift = pae ? 12 + (9 * (level - 1)) : 12 + (10 * (level - 1));
            ulong index = (linear >> shift) & (pae ? 0x1FFUL : 0x3FFUL);
            var entryAddress = new GuestPhysicalAddress(table + (index * (ulong)entrySize));
            if (!structures.TryReadEntry(entryAddress, entrySize, out ulong entry))
                return GuestPagingResult.StructureFault;
            if ((entry & Present) == 0)
                return Fault(registers, access, user, PageFaultErrorCode.None, out errorCode);
            bool large = level > 1 && (entry & PageSize) != 0 && (pae || (cr4 & Cr4Pse) != 0);
            if (pae)
            {
                // Reserved: XD without NXE; PS in a PML4E; bits 20:13 of a 2 MiB or 29:13 of a 1 GiB page (tables 4-15..4-20).
                ulong reserved = reservedHigh;
                if (level == 4)
                    reserved |= PageSize;
                if (large)
                    reserved |= level == 2 ? 0x1F_E000UL : 0x3FFF_E000UL;
                if ((entry & reserved) != 0)
                    return Fault(registers, access, user, PageFaultErrorCode.Present | PageFaultErrorCode.Reserved, out errorCode);
            }
            else if (large && (entry & (1UL << 21)) != 0)
            {
                // A 4 MiB PDE's bit 21 is reserved (table 4-4).
                return Fault(registers, access, user, PageFaultErrorCode.Present | PageFaultErrorCode.Reserved, out errorCode);
            }

            writable &= entry;
            userPage &= entry;
            if (nxe)
                noExecute |= entry & ExecuteDisable;
            if (level == 1 || large)
            {
                if (!Allowed(registers, access, privilege, writable != 0, userPage != 0, noExecute != 0))
                    return Fault(registers, access, user, PageFaultErrorCode.Present, out errorCode);
                if (large)
                {
                    ulong pageMask = (1UL << shift) - 1;
                    // A 4 MiB PDE holds physical-address bits 39:32 in its bits 20:13 (PSE-36, table 4-4).
                    ulong frame = pae ? entry & AddressMask & ~pageMask : (entry & 0xFFC0_0000UL) | ((entry & 0x1F_E000UL) << 19);
                    gpa = new GuestPhysicalAddress(frame | (linear & pageMask));
                }
                else
                {
                    gpa = new GuestPhysicalAddress((entry & (pae ? AddressMask : 0xFFFF_F000UL)) | (linear & 0xFFF));
                }

                // §4.8: the leaf's A bit on every access, its D bit on a write.
                ulong want = Accessed | (access == GuestPagingAccess.Write ? Dirty : 0);
                if ((entry & want) != want && !structures.TrySetBits(entryAddress, entrySize, entry, want & ~entry))
                    return GuestPagingResult.StructureFault;
                return GuestPagingResult.Translated;
            }

            if ((entry & Accessed) == 0 && !structures.TrySetBits(entryAddress, entrySize, entry, Accessed))
                return GuestPagingResult.StructureFault;
            table = entry & (pae ? AddressMask : 0xFFFF_F000UL);
        }

        return Fault(registers, access, user, PageFaultErrorCode.None, out errorCode); // not reached: level 1 is a leaf
    }

    /// <summary>
    /// Translates <paramref name="linear"/> through <paramref name="memory"/> (the domain's EPT), setting A/D bits
    /// with locked operations as a processor does.
    /// </summary>
    /// <param name="memory">The domain's guest-physical memory.</param>
    /// <param name="registers">The guest's CR0, CR3, CR4, EFER and RFLAGS.</param>
    /// <param name="linear">The linear address.</param>
    /// <param name="access">Read, write or fetch.</param>
    /// <param name="privilege">Supervisor, user or implicit supervisor.</param>
    /// <param name="gpa">The guest-physical address when translated.</param>
    /// <param name="errorCode">The #PF error code when the result is <see cref="GuestPagingResult.PageFault"/>.</param>
    /// <param name="fault">The EPT fault when the result is <see cref="GuestPagingResult.StructureFault"/>.</param>
    /// <returns>How the walk ended.</returns>
    public static GuestPagingResult Translate(GuestPhysicalMemory memory, in GuestPagingRegisters registers, ulong linear,
        GuestPagingAccess access, GuestPagingPrivilege privilege, out GuestPhysicalAddress gpa, out PageFaultErrorCode errorCode,
        out GuestMemoryFault fault)
    {
        ArgumentNullException.ThrowIfNull(memory);
        var structures = new GuestPhysicalPagingStructures(memory);
        var result = Translate(ref structures, registers, linear, access, privilege, out gpa, out errorCode);
        fault = structures.Fault;
        return result;
    }

    /// <summary>§4.6.1: may this access use a translation with these combined rights?</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool Allowed(in GuestPagingRegisters registers, GuestPagingAccess access, GuestPagingPrivilege privilege,
        bool writable, bool userPage, bool noExecute)
    {
        bool user = privilege == GuestPagingPrivilege.User;
        if (access == GuestPagingAccess.Execute)
        {
            if (noExecute)
                return false;
            if (user)
                return userPage;
            return !(userPage && (registers.Cr4 & Cr4Smep) != 0); // SMEP: no supervisor fetch from a user page
        }

        if (user)
            return userPage && (access != GuestPagingAccess.Write || writable);
        // SMAP: a supervisor data access to a user page faults when it is implicit or RFLAGS.AC = 0.
        if (userPage && (registers.Cr4 & Cr4Smap) != 0
            && (privilege == GuestPagingPrivilege.ImplicitSupervisor || (registers.Rflags & RflagsAc) == 0))
            return false;
        return access != GuestPagingAccess.Write || writable || (registers.Cr0 & Cr0Wp) == 0;
    }

    /// <summary>§4.7: the error code: P, W/R, U/S, RSVD, and I/D only with SMEP or with PAE/4-level paging and NXE.</summary>
    private static GuestPagingResult Fault(in GuestPagingRegisters registers, GuestPagingAccess access, bool user,
        PageFaultErrorCode bits, out PageFaultErrorCode errorCode)
    {
        bool fetchReported = (registers.Cr4 & Cr4Smep) != 0 || ((registers.Cr4 & Cr4Pae) != 0 && (registers.Efer & EferNxe) != 0);
        errorCode = bits
            | (access == GuestPagingAccess.Write ? PageFaultErrorCode.Write : 0)
            | (user ? PageFaultErrorCode.User : 0)
            | (access == GuestPagingAccess.Execute && fetchReported ? PageFaultErrorCode.InstructionFetch : 0);
        return GuestPagingResult.PageFault;
    }
}
