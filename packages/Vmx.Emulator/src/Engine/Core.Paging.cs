using VmmKit.Ept;

namespace VmmKit.Vmx.Emulator.Engine;

/// <summary>
/// Guest paging: linear to guest-physical with VmmKit.Ept's <see cref="GuestPageWalker"/> (SDM Vol. 3A §4.3 32-bit,
/// §4.4 PAE, §4.5 4-level; rights, reserved bits, A/D bits and the #PF error code of §4.6-§4.8), the walk the software
/// TLB caches. Every paging-structure access goes through the page source (the EPT: the 2-D walk); an EPT violation
/// there reports the guest-linear address with bit 8 of the qualification clear (SDM Vol. 3C §28.2.1 table 28-7).
/// </summary>
internal sealed unsafe partial class Core
{
    /// <summary>
    /// Set while the processor makes implicit supervisor-mode accesses (GDT/LDT/IDT/TSS reads, the stacks of event
    /// delivery to CPL 0): they are checked as supervisor accesses at any CPL and never fill the software TLB.
    /// </summary>
    public bool ImplicitSupervisor;

    private bool PageWalk(ulong lin, MemoryAccess access, out ulong gpa)
    {
        ref CpuState s = ref S;
        var registers = new GuestPagingRegisters(s.Cr0, s.Cr3, s.Cr4, s.Efer, s.Rflags);
        var privilege = ImplicitSupervisor ? GuestPagingPrivilege.ImplicitSupervisor
            : Cpl == 3 ? GuestPagingPrivilege.User : GuestPagingPrivilege.Supervisor;
        var structures = new PagingStructures(this, lin);
        var result = GuestPageWalker.Translate(ref structures, registers, lin, (GuestPagingAccess)access, privilege,
            out GuestPhysicalAddress translated, out PageFaultErrorCode errorCode);
        gpa = translated.Value;
        switch (result)
        {
            case GuestPagingResult.Translated:
                return true;
            case GuestPagingResult.PageFault:
                RaiseException(ExceptionVector.PF, (uint)errorCode);
                Event.GuestLinear = lin;
                return false;
            case GuestPagingResult.NonCanonical:
                RaiseException(ExceptionVector.GP, 0); // SDM Vol. 3A §3.3.7.1
                return false;
            default:
                return false; // ReadPaging/WritePaging raised the EPT exit
        }
    }

    /// <summary>The walker's view of the paging structures: the page source (the EPT), reporting a failure as the EPT exit of <see cref="RaiseEptFault"/>.</summary>
    private readonly struct PagingStructures(Core core, ulong lin) : IGuestPagingStructures
    {
        public bool TryReadEntry(GuestPhysicalAddress address, int size, out ulong entry) => core.ReadPaging(lin, address.Value, size, out entry);

        public bool TrySetBits(GuestPhysicalAddress address, int size, ulong entry, ulong bits) => core.WritePaging(lin, address.Value, size, entry | bits);
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
