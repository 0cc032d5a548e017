using System.Buffers.Binary;

namespace VmmKit.Boot.Tests;

/// <summary>Which Xen ELF note counts, as Xen 4.17's libelf-dominfo.c (elf_xen_parse, elf_xen_parse_notes).</summary>
public class XenNoteParityTests
{
    private static readonly byte[] Code = new byte[0x1000];

    private static ElfImage Parse(byte[] file)
    {
        Assert.True(ElfImage.TryParse(file, out var image, out string error), error);
        return image!;
    }

    private static ElfWriter Kernel(out ElfWriter w)
    {
        w = new ElfWriter();
        w.Load(0x100000, w.Blob(Code), 0x10000);
        return w;
    }

    [Fact]
    public void A_repeated_phys32_entry_note_the_last_one_wins_in_one_segment_and_across_segments()
    {
        // elf_xen_parse_note stores every note it meets: a later PHYS32_ENTRY overwrites an earlier one.
        Kernel(out var w);
        w.NoteSegment(w.Blob([.. ElfWriter.Phys32(0x100000), .. ElfWriter.Phys32(0x100010)]));
        Assert.Equal(0x100010u, Parse(w.Build()).Phys32Entry);

        Kernel(out w);
        w.NoteSegment(w.Blob(ElfWriter.Phys32(0x100000)));
        w.NoteSegment(w.Blob(ElfWriter.Phys32(0x100020)));
        Assert.Equal(0x100020u, Parse(w.Build()).Phys32Entry);

        Assert.Equal(0x100010u, XenElfNotes.FindPhys32Entry([.. ElfWriter.Phys32(0x100000), .. ElfWriter.Phys32(0x100010)]));
    }

    [Fact]
    public void Section_notes_are_not_read_when_a_note_segment_has_any_Xen_note()
    {
        // elf_xen_parse falls back to SHT_NOTE sections only when the segments held no Xen note at all.
        Kernel(out var w);
        w.NoteSegment(w.Blob(ElfWriter.Note(6, "linux\0"u8.ToArray())));     // XEN_ELFNOTE_GUEST_OS
        w.NoteSection(w.Blob(ElfWriter.Phys32(0x100000)));
        Assert.False(ElfImage.TryParse(w.Build(), out _, out string error));
        Assert.Contains("PHYS32_ENTRY", error);

        Kernel(out w);
        w.NoteSegment(w.Blob(ElfWriter.Note(6, "linux\0"u8.ToArray(), name: "GNU")));
        w.NoteSection(w.Blob(ElfWriter.Phys32(0x100000)));
        w.NoteSection(w.Blob(ElfWriter.Phys32(0x100040)));                   // every section, the last wins
        Assert.Equal(0x100040u, Parse(w.Build()).Phys32Entry);
    }

    [Fact]
    public void A_note_segment_at_file_offset_zero_is_skipped()
    {
        // elf_xen_parse: "Some versions of binutils do not correctly set p_offset for note segments."
        Kernel(out var w);
        int notes = w.Blob(ElfWriter.Phys32(0x100000));
        w.Phdr(ElfWriter.PtNote, ElfWriter.PfR, notes, 0, 0, 0x200, 0);
        w.NoteSegment(notes);
        Assert.Equal(0x100000u, Parse(w.Build()).Phys32Entry);
    }

    [Fact]
    public void A_phys32_entry_of_all_ones_means_unset()
    {
        // Xen's phys_entry is a uint32_t whose "unset" value is UNSET_ADDR32, (uint32_t)-1.
        Kernel(out var w);
        w.NoteSegment(w.Blob([.. ElfWriter.Phys32(0x100000), .. ElfWriter.Phys32(0xFFFF_FFFF)]));
        Assert.False(ElfImage.TryParse(w.Build(), out _, out string error));
        Assert.Contains("PHYS32_ENTRY", error);
    }

    [Fact]
    public void An_eight_byte_phys32_entry_keeps_its_low_32_bits()
    {
        // elf_xen_parse_note: parms->phys_entry = val, a uint64_t stored in a uint32_t.
        Kernel(out var w);
        w.NoteSegment(w.Blob(ElfWriter.Note(18, BitConverter.GetBytes(0x1_0010_0040UL))));
        Assert.Equal(0x100040u, Parse(w.Build()).Phys32Entry);
    }

    [Fact]
    public void A_descriptor_of_an_odd_size_reads_as_zero()
    {
        // elf_note_numeric returns 0 for a descsz other than 1, 2, 4 or 8.
        var w = new ElfWriter();
        w.Load(0, w.Blob(Code), 0x10000);
        w.NoteSegment(w.Blob(ElfWriter.Note(18, [0x10, 0x20, 0x30])));
        Assert.Equal(0u, Parse(w.Build()).Phys32Entry);
    }

    [Fact]
    public void The_name_is_compared_as_a_C_string()
    {
        // elf_xen_parse_notes: strcmp(elf_note_name(...), "Xen"), whatever namesz says.
        var note = ElfWriter.Note(18, BitConverter.GetBytes(0x100000u), name: "Xen\0\0\0\0");
        Assert.Equal(8u, BinaryPrimitives.ReadUInt32LittleEndian(note));
        Assert.Equal(0x100000u, XenElfNotes.FindPhys32Entry(note));
        var shortName = ElfWriter.Phys32(0x100000);
        BinaryPrimitives.WriteUInt32LittleEndian(shortName, 3);              // "Xen" without its NUL; the padding is 0
        Assert.Equal(0x100000u, XenElfNotes.FindPhys32Entry(shortName));
        Assert.Null(XenElfNotes.FindPhys32Entry(ElfWriter.Note(18, BitConverter.GetBytes(0x100000u), name: "Xenon")));
    }

    [Fact]
    public void No_more_than_65536_notes_are_read()
    {
        // elf_xen_parse_notes stops at ELF_MAX_TOTAL_NOTE_COUNT notes over all note areas ("too many ELF notes").
        Kernel(out var w);
        int empty = w.Blob(new byte[12 * 40000]);                             // 40000 notes with no name or descriptor
        w.NoteSegment(empty);
        w.NoteSegment(empty);
        w.NoteSegment(w.Blob(ElfWriter.Phys32(0x100000)));
        Assert.False(ElfImage.TryParse(w.Build(), out _, out string error));
        Assert.Contains("PHYS32_ENTRY", error);

        Kernel(out w);
        empty = w.Blob(new byte[12 * 40000]);
        w.NoteSegment(empty);
        w.NoteSegment(w.Blob(ElfWriter.Phys32(0x100000)));
        Assert.Equal(0x100000u, Parse(w.Build()).Phys32Entry);
    }
}
