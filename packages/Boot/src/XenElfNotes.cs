namespace VmmKit.Boot;

/// <summary>
/// Reads Xen's ELF notes (xen/include/public/elfnote.h): name "Xen", type XEN_ELFNOTE_*, walked as Xen 4.17's
/// libelf does (4-byte padding after the name and the descriptor for both ELF classes, the last note of a type
/// wins, a numeric descriptor of 1, 2, 4 or 8 bytes, any other size reading as 0).
/// </summary>
public static class XenElfNotes
{
    /// <summary>XEN_ELFNOTE_PHYS32_ENTRY: the 32-bit physical entry point of a PVH kernel.</summary>
    public const uint Phys32Entry = 18;

    /// <summary>
    /// Returns the last PHYS32_ENTRY value in a note area (its low 32 bits), or null when there is none, the last
    /// one is 0xFFFFFFFF (libelf's "unset"), or the walk stops first at a note that overruns the area.
    /// </summary>
    /// <param name="notes">The bytes of a PT_NOTE segment or SHT_NOTE section.</param>
    /// <returns>The entry point, or null.</returns>
    public static uint? FindPhys32Entry(ReadOnlySpan<byte> notes)
    {
        var scan = new XenElfNoteScan();
        scan.Walk(notes);
        return scan.Phys32Entry;
    }
}
