using System.Buffers.Binary;
using CsCheck;

namespace VmmKit.Boot.Tests;

/// <summary>The kernel file is hostile input: no exception, no write outside guest RAM, whatever the bytes.</summary>
public class HostileElfTests
{
    private static readonly byte[] Code = [0xF4, 0xEB, 0xFD, 0x90];

    /// <summary>Records every write and fails the test on one outside RAM (a real VMM's EPT would refuse it).</summary>
    private sealed class StrictRam(ulong size) : IGuestPhysicalWriter
    {
        public ulong Written { get; private set; }

        public bool TryWrite(ulong address, ReadOnlySpan<byte> data)
        {
            Assert.True(address < size && (ulong)data.Length <= size - address, $"write of {data.Length} bytes at 0x{address:x} outside 0x{size:x} bytes of RAM");
            Written += (ulong)data.Length;
            return true;
        }
    }

    [Theory]
    [InlineData(false, true)]
    [InlineData(true, true)]
    [InlineData(true, false)]
    public void Random_corruption_of_elf32_and_elf64_never_throws_or_writes_outside_ram(bool is64, bool noteInProgramHeaders)
    {
        var good = ElfBuilder.Build(is64, 62, 0x100000, Code, 0x100000, bss: 0x1000, noteInProgramHeaders: noteInProgramHeaders);
        Gen.Select(Gen.Int[0, good.Length - 1].Array[1, 12], Gen.Byte.Array[12]).Sample((positions, values) =>
        {
            var f = (byte[])good.Clone();
            for (int i = 0; i < positions.Length; i++)
                f[positions[i]] = values[i];
            if (ElfImage.TryParse(f, out var image, out _))
                PvhLoader.TryLoad(image!, f, "x", [new PvhModule([1, 2, 3], "m")], 4 << 20, new StrictRam(4 << 20), out _, out _);
        }, iter: 2000);
    }

    [Fact]
    public void Random_corruption_of_notes_features_and_overlapping_segments_never_throws_or_writes_outside_ram()
    {
        var w = new ElfWriter();
        w.Load(0x100000, w.Blob([.. Code, .. new byte[60]]), 0x2000);
        w.Load(0x101000, w.Blob(Code), 0x10, ElfWriter.PfR);
        w.NoteSegment(w.Blob([.. ElfWriter.Note(10, "!dom0|writable_page_tables\0"u8.ToArray()), .. ElfWriter.Phys32(0x100000)]));
        w.NoteSegment(w.Blob(ElfWriter.Note(18, BitConverter.GetBytes(0x100010UL))));
        w.NoteSection(w.Blob(ElfWriter.Phys32(0x100004)));
        var good = w.Build();
        Assert.True(ElfImage.TryParse(good, out _, out string error), error);
        Gen.Select(Gen.Int[0, good.Length - 1].Array[1, 16], Gen.Byte.Array[16]).Sample((positions, values) =>
        {
            var f = (byte[])good.Clone();
            for (int i = 0; i < positions.Length; i++)
                f[positions[i]] = values[i];
            if (ElfImage.TryParse(f, out var image, out _))
                PvhLoader.TryLoad(image!, f, "x", [new PvhModule([1, 2, 3], "m")], 4 << 20, new StrictRam(4 << 20), out _, out _);
        }, iter: 3000);
    }

    [Fact]
    public void Every_truncation_is_refused_cleanly()
    {
        var good = ElfBuilder.Build(true, 62, 0x100000, Code, 0x100000);
        for (int n = 0; n < good.Length; n++)
            ElfImage.TryParse(good.AsSpan(0, n), out _, out _);   // no exception for any prefix
        Assert.False(ElfImage.TryParse(good.AsSpan(0, 63), out _, out string error));
        Assert.Contains("ELF64", error);
    }

    [Fact]
    public void A_segment_that_wraps_the_64_bit_space_is_refused()
    {
        var f = ElfBuilder.Build(true, 62, 0x100000, Code, 0x100000);
        int ph = 64;                                                  // first program header (PT_LOAD)
        BinaryPrimitives.WriteUInt64LittleEndian(f.AsSpan(ph + 24), 0xFFFF_FFFF_FFFF_F000);   // p_paddr
        BinaryPrimitives.WriteUInt64LittleEndian(f.AsSpan(ph + 40), 0x2000);                  // p_memsz
        Assert.False(ElfImage.TryParse(f, out _, out string error));
        Assert.Contains("wraps", error);
    }

    [Fact]
    public void A_huge_bss_is_refused_before_anything_is_written()
    {
        var f = ElfBuilder.Build(false, 3, 0x100000, Code, 0x100000, bss: 0x7FFF_0000);
        Assert.True(ElfImage.TryParse(f, out var image, out _));
        var ram = new StrictRam(16 << 20);
        Assert.False(PvhLoader.TryLoad(image!, f, "", [], 16 << 20, ram, out _, out string error));
        Assert.Contains("does not fit", error);
        Assert.Equal(0ul, ram.Written);
    }

    [Fact]
    public void A_note_with_sizes_past_its_area_is_ignored_not_read()
    {
        // namesz = 0xFFFFFFF0: the walker must stop, not read past the note area.
        byte[] notes = new byte[24];
        BinaryPrimitives.WriteUInt32LittleEndian(notes, 0xFFFF_FFF0);
        BinaryPrimitives.WriteUInt32LittleEndian(notes.AsSpan(8), XenElfNotes.Phys32Entry);
        Assert.Null(XenElfNotes.FindPhys32Entry(notes));
        BinaryPrimitives.WriteUInt32LittleEndian(notes, 4);
        BinaryPrimitives.WriteUInt32LittleEndian(notes.AsSpan(4), 0xFFFF_FFFC);   // descsz
        "Xen\0"u8.CopyTo(notes.AsSpan(12));
        Assert.Null(XenElfNotes.FindPhys32Entry(notes));
    }

    [Fact]
    public void Modules_that_do_not_fit_are_refused()
    {
        var f = ElfBuilder.Build(false, 3, 0x100000, Code, 0x100000);
        Assert.True(ElfImage.TryParse(f, out var image, out _));
        Assert.False(PvhLoader.TryLoad(image!, f, "", [new PvhModule(new byte[2 << 20], "")], 2 << 20, new StrictRam(2 << 20), out _, out string error));
        Assert.Contains("module 0", error);
        var many = Enumerable.Range(0, 65).Select(_ => new PvhModule([0], "")).ToArray();
        Assert.False(PvhLoader.TryLoad(image!, f, "", many, 8 << 20, new StrictRam(8 << 20), out _, out error));
        Assert.Contains("modules", error);
    }
}
