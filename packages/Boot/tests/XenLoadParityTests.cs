using System.Buffers.Binary;

namespace VmmKit.Boot.Tests;

/// <summary>What is loaded where, as Xen 4.17's libelf-loader.c and libelf-dominfo.c.</summary>
public class XenLoadParityTests
{
    private static byte[] Fill(int size, byte value) => Enumerable.Repeat(value, size).ToArray();

    [Fact]
    public void A_PT_LOAD_without_read_write_or_execute_permission_is_not_loaded()
    {
        // elf_phdr_is_loadable: PT_LOAD with (p_flags & (PF_R | PF_W | PF_X)) != 0.
        var w = new ElfWriter();
        w.Load(0x100000, w.Blob(Fill(0x1000, 0xAA)), 0x1000, ElfWriter.PfR);
        w.Load(0x200000, w.Blob(Fill(0x1000, 0xBB)), 0x1000, flags: 0);
        w.Phdr(ElfWriter.PtLoad, 0, 0, 0xFFFF_FFFF, 0x300000, 0x10_0000_0000, 1);   // ignored: never checked
        w.NoteSegment(w.Blob(ElfWriter.Phys32(0x100000)));
        var f = w.Build();
        Assert.True(ElfImage.TryParse(f, out var image, out string error), error);
        var s = Assert.Single(image!.Segments);
        Assert.Equal(0x100000ul, s.PhysicalAddress);
        Assert.Equal(0x101000ul, image.HighestAddress);
        var ram = new ByteArrayGuestMemory(4 << 20);
        Assert.True(PvhLoader.TryLoad(image, f, "", [], 4 << 20, ram, out _, out error), error);
        Assert.Equal(0, ram.Bytes[0x200000]);
    }

    [Theory]
    [InlineData(0x100000u, true)]
    [InlineData(0x102000u, true)]     // pend itself: Xen refuses only virt_entry > virt_kend
    [InlineData(0x0FFFFFu, false)]
    [InlineData(0x102001u, false)]
    public void The_entry_point_must_lie_in_the_loaded_range(uint entry, bool accepted)
    {
        // elf_xen_addr_calc_check: "ELF start or entries are out of bounds" (PVH: virt_entry = phys_entry,
        // virt_kstart/kend = pstart/pend).
        var w = new ElfWriter();
        w.Load(0x100000, w.Blob(new byte[0x100]), 0x2000);
        w.NoteSegment(w.Blob(ElfWriter.Phys32(entry)));
        Assert.Equal(accepted, ElfImage.TryParse(w.Build(), out _, out string error));
        if (!accepted)
            Assert.Contains("out of bounds", error);
    }

    [Fact]
    public void A_loadable_segment_of_no_memory_still_bounds_the_kernel()
    {
        // elf_parse_binary takes pstart/pend over every loadable program header, whatever its p_memsz.
        var w = new ElfWriter();
        w.Load(0x100000, w.Blob(new byte[0x100]), 0x1000);
        w.Phdr(ElfWriter.PtLoad, ElfWriter.PfR, 0, null, 0x180000, 0, 0);
        w.NoteSegment(w.Blob(ElfWriter.Phys32(0x180000)));
        var f = w.Build();
        Assert.True(ElfImage.TryParse(f, out var image, out string error), error);
        Assert.Single(image!.Segments);
        Assert.Equal(0x180000ul, image.HighestAddress);
        Assert.True(PvhLoader.TryLoad(image, f, "", [new PvhModule([1], "")], 4 << 20, new ByteArrayGuestMemory(4 << 20), out var boot, out error), error);
        Assert.Equal(0x180000ul, boot.KernelEnd);
        Assert.True(boot.StartInfoAddress >= 0x181000);
    }

    [Fact]
    public void Overlapping_segments_load_in_file_order_up_to_twice_the_kernel_span()
    {
        // elf_load_binary: later segments overwrite earlier ones, and the segments' p_memsz may total at most
        // twice the kernel's (page-rounded) span, "program segments total to more than the input image size".
        var w = new ElfWriter();
        w.Load(0x100000, w.Blob(Fill(0x2000, 0xAA)), 0x2000);
        w.Load(0x101000, w.Blob(Fill(0x1000, 0xBB)), 0x1000);
        w.NoteSegment(w.Blob(ElfWriter.Phys32(0x100000)));
        var f = w.Build();
        Assert.True(ElfImage.TryParse(f, out var image, out string error), error);
        var ram = new ByteArrayGuestMemory(4 << 20);
        Assert.True(PvhLoader.TryLoad(image!, f, "", [], 4 << 20, ram, out _, out error), error);
        Assert.Equal(0xAA, ram.Bytes[0x100FFF]);
        Assert.Equal(0xBB, ram.Bytes[0x101000]);

        w = new ElfWriter();
        int big = w.Blob(new byte[0x10]);
        for (int i = 0; i < 3; i++)
            w.Load(0x100000, big, 0x10_0000);                                 // 3 MiB of writes into a 1 MiB kernel
        w.NoteSegment(w.Blob(ElfWriter.Phys32(0x100000)));
        Assert.False(ElfImage.TryParse(w.Build(), out _, out error));
        Assert.Contains("total", error);
    }

    [Fact]
    public void Thousands_of_overlapping_segments_over_all_of_ram_are_refused_before_any_write()
    {
        // Without elf_load_binary's remain_allow_copy, 4096 segments of 3 GiB each meant 12 TiB of writes.
        var w = new ElfWriter();
        int code = w.Blob([0xF4]);
        for (int i = 0; i < 4000; i++)
            w.Load(0x100000, code, 0xC000_0000);
        w.NoteSegment(w.Blob(ElfWriter.Phys32(0x100000)));
        Assert.False(ElfImage.TryParse(w.Build(), out _, out string error));
        Assert.Contains("total", error);
    }

    [Fact]
    public void A_section_header_table_past_the_end_of_the_file_is_refused()
    {
        // elf_init: "ELF: shdr overflow", checked whether or not the notes are in the program headers.
        var f = ElfBuilder.Build(true, 62, 0x100000, [0xF4], 0x100000);
        BinaryPrimitives.WriteUInt64LittleEndian(f.AsSpan(40), (ulong)f.Length);       // e_shoff
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(58), 64);                    // e_shentsize
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(60), 1);                     // e_shnum
        Assert.False(ElfImage.TryParse(f, out _, out string error));
        Assert.Contains("section header", error);
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(60), 0);
        Assert.True(ElfImage.TryParse(f, out _, out error), error);                    // an empty table at the end
    }

    [Fact]
    public void A_loadable_segment_of_no_memory_near_the_top_of_the_address_space_cannot_wrap_module_placement()
    {
        // pend is 2^64 - 0xFFF: modules and the start info go above pend, which must not wrap to address 0.
        var w = new ElfWriter();
        w.Load(0x100000, w.Blob(new byte[0x100]), 0x1000);
        w.Phdr(ElfWriter.PtLoad, ElfWriter.PfR, 0, null, 0xFFFF_FFFF_FFFF_F001, 0, 0);
        w.NoteSegment(w.Blob(ElfWriter.Phys32(0x100000)));
        var f = w.Build();
        Assert.True(ElfImage.TryParse(f, out var image, out string error), error);
        var ram = new HostileRam(4 << 20);
        Assert.False(PvhLoader.TryLoad(image!, f, "x", [new PvhModule([1, 2, 3], "")], 4 << 20, ram, out _, out error));
        Assert.Contains("does not fit", error);
        Assert.Equal(0ul, ram.Written);
    }

    /// <summary>Counts the bytes written.</summary>
    private sealed class HostileRam(int size) : IGuestPhysicalWriter
    {
        private readonly ByteArrayGuestMemory _ram = new(size);

        public ulong Written { get; private set; }

        public bool TryWrite(ulong address, ReadOnlySpan<byte> data)
        {
            Written += (ulong)data.Length;
            return _ram.TryWrite(address, data);
        }
    }
}
