namespace VmmKit.Ept;

/// <summary>
/// <see cref="IGuestPagingStructures"/> over a domain's <see cref="GuestPhysicalMemory"/>: entries are read through
/// the EPT, and accessed/dirty bits are set with compare-exchange, as the processor's locked update (SDM Vol. 3A §4.8).
/// </summary>
/// <param name="memory">The domain's guest-physical memory.</param>
public struct GuestPhysicalPagingStructures(GuestPhysicalMemory memory) : IGuestPagingStructures
{
    private const int MaxAttempts = 64;

    /// <summary>The EPT fault of the last failed access (default when none failed).</summary>
    public GuestMemoryFault Fault { get; private set; }

    /// <inheritdoc/>
    public bool TryReadEntry(GuestPhysicalAddress address, int size, out ulong entry)
    {
        bool ok;
        GuestMemoryFault fault;
        if (size == 8)
        {
            ok = memory.TryRead(address, out entry, out fault);
        }
        else
        {
            ok = memory.TryRead(address, out uint value, out fault);
            entry = value;
        }

        if (!ok)
            Fault = fault;
        return ok;
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
                Fault = fault;
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
