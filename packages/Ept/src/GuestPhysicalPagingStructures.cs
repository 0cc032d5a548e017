namespace VmmKit.Ept;

/// <summary>
/// <see cref="IGuestPagingStructures"/> over a domain's <see cref="GuestPhysicalMemory"/>: entries are read through
/// the EPT, and accessed/dirty bits are set with compare-exchange, as the processor's locked update (SDM Vol. 3A §4.8).
/// </summary>
/// <param name="memory">The domain's guest-physical memory.</param>
public struct GuestPhysicalPagingStructures(GuestPhysicalMemory memory) : IGuestPagingStructures
{
    private const int MaxAttempts = 64;

    private static readonly EptViolationQualification PagingStructureAccess =
        EptViolationQualification.ForLinearAddress(translationOfLinearAddress: false);

    /// <summary>The EPT fault of the last failed access (default when none failed).</summary>
    public GuestMemoryFault Fault { get; private set; }

    /// <inheritdoc/>
    public unsafe bool TryReadEntry(GuestPhysicalAddress address, int size, out ulong entry)
    {
        // SDM Vol. 3C §29.3.3.2: with EPT accessed and dirty flags enabled, processor accesses to guest paging-structure
        // entries are treated as writes (they need write permission and set the EPT dirty flag, §29.3.5), and a
        // violation sets qualification bits 0 and 1 (Table 28-7, note 1); bit 7 set and bit 8 clear mark an access to
        // a paging-structure entry.
        EptAccess access = memory.Pointer.AccessedDirtyEnabled ? EptAccess.Read | EptAccess.Write : EptAccess.Read;
        if (!memory.TryGetHostPage(address, access, out byte* page, out GuestMemoryFault fault, PagingStructureAccess))
        {
            Fault = fault;
            entry = 0;
            return false;
        }

        // Entries are naturally aligned, so one never crosses its page.
        byte* at = page + address.PageOffset;
        entry = size == 8 ? Volatile.Read(ref *(ulong*)at) : Volatile.Read(ref *(uint*)at);
        return true;
    }

    /// <summary>
    /// Reads a PAE PDPTE. SDM Vol. 3C §29.3.3.2: loads of the PDPTEs are treated as reads even with EPT accessed and
    /// dirty flags enabled, and their violations have no valid guest-linear address (Table 28-7 bit 7 clear).
    /// </summary>
    internal unsafe bool TryReadPdpte(GuestPhysicalAddress address, out ulong entry)
    {
        if (!memory.TryGetHostPage(address, EptAccess.Read, out byte* page, out GuestMemoryFault fault))
        {
            Fault = fault;
            entry = 0;
            return false;
        }

        entry = Volatile.Read(ref *(ulong*)(page + address.PageOffset));
        return true;
    }

    /// <inheritdoc/>
    public bool TrySetBits(GuestPhysicalAddress address, int size, ulong entry, ulong bits)
    {
        // A locked OR: retry while another processor changes the entry. A guest that rewrites the entry without end
        // only loses the A/D update, which is no worse than its own race.
        for (int attempt = 0; attempt < MaxAttempts; attempt++)
        {
            ulong original;
            GuestMemoryFault fault;
            bool ok = size == 8
                ? memory.TryCompareExchange64(address, entry | bits, entry, out original, out fault)
                : TryCompareExchange32(address, entry, bits, out original, out fault);
            if (!ok)
            {
                // Still an access to a paging-structure entry (Table 28-7: bit 7 set, bit 8 clear).
                Fault = fault.Status == EptTranslationStatus.Violation
                    ? new GuestMemoryFault(fault.Address, fault.Status, new EptViolationQualification(fault.Qualification.Value | PagingStructureAccess.Value))
                    : fault;
                return false;
            }

            if (original == entry || (original & bits) == bits)
                return true;
            entry = original;
        }

        return true;
    }

    private readonly bool TryCompareExchange32(GuestPhysicalAddress address, ulong entry, ulong bits, out ulong original, out GuestMemoryFault fault)
    {
        bool ok = memory.TryCompareExchange32(address, (uint)(entry | bits), (uint)entry, out uint value, out fault);
        original = value;
        return ok;
    }
}
