using System.Buffers.Binary;

namespace VmmKit.Boot;

/// <summary>
/// Reads Xen's ELF notes (xen/include/public/elfnote.h): name "Xen", type XEN_ELFNOTE_*. Entries
/// are walked with 4-byte padding after the name and the descriptor, as Xen's libelf does for both
/// ELF classes; a numeric descriptor may be 1, 2, 4 or 8 bytes.
/// </summary>
public static class XenElfNotes
{
    /// <summary>XEN_ELFNOTE_PHYS32_ENTRY: the 32-bit physical entry point of a PVH kernel.</summary>
    public const uint Phys32Entry = 18;

    /// <summary>Returns the PHYS32_ENTRY value in a note area, or null when absent or malformed.</summary>
    /// <param name="notes">The bytes of a PT_NOTE segment or SHT_NOTE section.</param>
    /// <returns>The entry point, or null.</returns>
    public static uint? FindPhys32Entry(ReadOnlySpan<byte> notes)
    {
        int pos = 0;
        while (notes.Length - pos >= 12)
        {
            uint namesz = BinaryPrimitives.ReadUInt32LittleEndian(notes[pos..]);
            uint descsz = BinaryPrimitives.ReadUInt32LittleEndian(notes[(pos + 4)..]);
            uint type = BinaryPrimitives.ReadUInt32LittleEndian(notes[(pos + 8)..]);
            ulong nameEnd = (ulong)pos + 12 + Align4(namesz);
            ulong descEnd = nameEnd + Align4(descsz);
            if (nameEnd > (ulong)notes.Length || (ulong)pos + 12 + namesz > (ulong)notes.Length
                || nameEnd + descsz > (ulong)notes.Length)
                return null;
            var name = notes.Slice(pos + 12, (int)namesz);
            var desc = notes.Slice((int)nameEnd, (int)descsz);
            if (type == Phys32Entry && IsXen(name))
            {
                ulong? value = Numeric(desc);
                return value is { } v && v <= uint.MaxValue ? (uint)v : null;
            }

            if (descEnd >= (ulong)notes.Length)
                break;
            pos = (int)descEnd;
        }

        return null;
    }

    private static ulong Align4(uint v) => ((ulong)v + 3) & ~3UL;

    private static bool IsXen(ReadOnlySpan<byte> name) =>
        name.Length >= 3 && name[0] == (byte)'X' && name[1] == (byte)'e' && name[2] == (byte)'n'
        && (name.Length == 3 || (name.Length == 4 && name[3] == 0));

    private static ulong? Numeric(ReadOnlySpan<byte> d) => d.Length switch
    {
        1 => d[0],
        2 => BinaryPrimitives.ReadUInt16LittleEndian(d),
        4 => BinaryPrimitives.ReadUInt32LittleEndian(d),
        8 => BinaryPrimitives.ReadUInt64LittleEndian(d),
        _ => null,
    };
}
