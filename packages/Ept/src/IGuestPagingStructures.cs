namespace VmmKit.Ept;

/// <summary>
/// Where <see cref="GuestPageWalker"/> reads and updates the guest's paging-structure entries: normally the guest's
/// memory through the EPT (the 2-D walk, SDM Vol. 3C §29.3.1), so an access to a table outside the domain's memory
/// fails instead of reaching another domain's frames. Implemented by a struct, the walk is specialized for it and
/// allocates nothing.
/// </summary>
public interface IGuestPagingStructures
{
    /// <summary>Reads the entry of <paramref name="size"/> bytes (4 for 32-bit paging, 8 otherwise) at <paramref name="address"/>.</summary>
    /// <param name="address">The entry's guest-physical address (naturally aligned).</param>
    /// <param name="size">4 or 8.</param>
    /// <param name="entry">The entry, zero-extended.</param>
    /// <returns>False when the read failed; the walk then ends with <see cref="GuestPagingResult.StructureFault"/>.</returns>
    bool TryReadEntry(GuestPhysicalAddress address, int size, out ulong entry);

    /// <summary>
    /// Sets the accessed and dirty <paramref name="bits"/> in the entry at <paramref name="address"/>, which read as
    /// <paramref name="entry"/>. Hardware does this with a locked operation (SDM Vol. 3A §4.8); an implementation
    /// shared with other processors should too.
    /// </summary>
    /// <param name="address">The entry's guest-physical address.</param>
    /// <param name="size">4 or 8.</param>
    /// <param name="entry">The entry as the walk read it.</param>
    /// <param name="bits">The bits to set (A = 0x20, D = 0x40).</param>
    /// <returns>False when the write failed; the walk then ends with <see cref="GuestPagingResult.StructureFault"/>.</returns>
    bool TrySetBits(GuestPhysicalAddress address, int size, ulong entry, ulong bits);
}
