using System.Buffers.Binary;

namespace VmmKit.ReferenceHypervisor.Demo;

/// <summary>
/// Writes a minimal PVH kernel: an ELF32 EM_386 executable with one PT_LOAD segment and a PT_NOTE
/// holding XEN_ELFNOTE_PHYS32_ENTRY (xen/include/public/elfnote.h) — the smallest file our loader,
/// Xen's and QEMU's accept.
/// </summary>
internal static class Elf32ImageWriter
{
    private const int HeaderSize = 52, ProgramHeaderSize = 32, NoteSize = 20, SegmentFileOffset = 0x1000;

    /// <summary>
    /// Builds the file: <paramref name="image"/> loaded at <paramref name="loadAddress"/>, zero-extended to
    /// <paramref name="memorySize"/> bytes, entered at <paramref name="entry"/>.
    /// </summary>
    public static byte[] Write(uint loadAddress, ReadOnlySpan<byte> image, uint memorySize, uint entry)
    {
        var f = new byte[SegmentFileOffset + image.Length];
        var s = f.AsSpan();
        "\u007fELF"u8.CopyTo(s);
        s[4] = 1;                                  // ELFCLASS32
        s[5] = 1;                                  // ELFDATA2LSB
        s[6] = 1;                                  // EV_CURRENT
        W16(s, 16, 2);                             // ET_EXEC
        W16(s, 18, 3);                             // EM_386
        W32(s, 20, 1);                             // e_version
        W32(s, 24, entry);                         // e_entry
        W32(s, 28, HeaderSize);                    // e_phoff
        W16(s, 40, HeaderSize);                    // e_ehsize
        W16(s, 42, ProgramHeaderSize);             // e_phentsize
        W16(s, 44, 2);                             // e_phnum

        int ph = HeaderSize;
        W32(s, ph + 0, 1);                         // PT_LOAD
        W32(s, ph + 4, SegmentFileOffset);
        W32(s, ph + 8, loadAddress);
        W32(s, ph + 12, loadAddress);
        W32(s, ph + 16, (uint)image.Length);
        W32(s, ph + 20, Math.Max(memorySize, (uint)image.Length));
        W32(s, ph + 24, 7);                        // PF_R | PF_W | PF_X
        W32(s, ph + 28, 0x1000);

        int noteOffset = HeaderSize + (2 * ProgramHeaderSize);
        ph += ProgramHeaderSize;
        W32(s, ph + 0, 4);                         // PT_NOTE
        W32(s, ph + 4, (uint)noteOffset);
        W32(s, ph + 16, NoteSize);
        W32(s, ph + 20, NoteSize);
        W32(s, ph + 24, 4);                        // PF_R
        W32(s, ph + 28, 4);

        W32(s, noteOffset + 0, 4);                 // namesz ("Xen\0")
        W32(s, noteOffset + 4, 4);                 // descsz
        W32(s, noteOffset + 8, 18);                // XEN_ELFNOTE_PHYS32_ENTRY
        "Xen\0"u8.CopyTo(s[(noteOffset + 12)..]);
        W32(s, noteOffset + 16, entry);

        image.CopyTo(s[SegmentFileOffset..]);
        return f;
    }

    private static void W16(Span<byte> s, int o, ushort v) => BinaryPrimitives.WriteUInt16LittleEndian(s[o..], v);

    private static void W32(Span<byte> s, int o, uint v) => BinaryPrimitives.WriteUInt32LittleEndian(s[o..], v);
}
