using System.Buffers.Binary;
using System.Text;
using CsCheck;
using VmmKit.Boot;

namespace VmmKit.Boot.Tests;

public class PvhLoaderTests
{
    private static readonly byte[] Code = [0xF4, 0xEB, 0xFD, 0x90]; // hlt; jmp $-1; nop

    [Theory]
    [InlineData(false, (ushort)3, true)]
    [InlineData(false, (ushort)62, true)]   // Xen's test kernels: ELF32 with EM_X86_64
    [InlineData(true, (ushort)62, true)]
    [InlineData(false, (ushort)3, false)]   // note only in the section headers
    [InlineData(true, (ushort)62, false)]
    public void Parses_elf32_and_elf64_with_the_note_in_program_or_section_headers(bool is64, ushort machine, bool inPhdrs)
    {
        var elf = ElfBuilder.Build(is64, machine, 0x100000, Code, 0x100000, bss: 0x2000, noteInProgramHeaders: inPhdrs);
        Assert.True(ElfImage.TryParse(elf, out var image, out string error), error);
        Assert.Equal(is64, image!.Is64Bit);
        Assert.Equal(0x100000u, image.Phys32Entry);
        var s = Assert.Single(image.Segments);
        Assert.Equal(0x100000ul, s.PhysicalAddress);
        Assert.Equal((ulong)Code.Length + 0x2000, s.MemorySize);
    }

    [Fact]
    public void An_entry_point_of_zero_is_valid()
    {
        var elf = ElfBuilder.Build(false, 3, 0, Code, 0);
        Assert.True(ElfImage.TryParse(elf, out var image, out string error), error);
        Assert.Equal(0u, image!.Phys32Entry);
    }

    [Fact]
    public void An_eight_byte_note_descriptor_is_read()
    {
        var elf = ElfBuilder.Build(true, 62, 0x200000, Code, 0x200002, noteDescSize: 8);
        Assert.True(ElfImage.TryParse(elf, out var image, out string error), error);
        Assert.Equal(0x200002u, image!.Phys32Entry);
    }

    [Fact]
    public void A_kernel_without_the_note_is_refused()
    {
        var elf = ElfBuilder.Build(false, 3, 0x100000, Code, 0x100000, withNote: false);
        Assert.False(ElfImage.TryParse(elf, out _, out string error));
        Assert.Contains("PHYS32_ENTRY", error);
    }

    [Theory]
    [InlineData(new byte[0], "not an ELF")]
    [InlineData(new byte[] { 0x7f, (byte)'E', (byte)'L', (byte)'F' }, "not an ELF")]
    public void Garbage_is_refused(byte[] file, string message)
    {
        Assert.False(ElfImage.TryParse(file, out _, out string error));
        Assert.Contains(message, error);
    }

    [Fact]
    public void Bad_headers_give_clean_errors()
    {
        var good = ElfBuilder.Build(false, 3, 0x100000, Code, 0x100000);
        Assert.Contains("class", Mutate(good, b => b[4] = 9));
        Assert.Contains("little-endian", Mutate(good, b => b[5] = 2));
        Assert.Contains("machine", Mutate(good, b => b[18] = 40));
        Assert.Contains("program header", Mutate(good, b => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(28), 0xFFFFFFF0)));
        Assert.Contains("p_filesz", Mutate(good, b => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(52 + 20), 1)));
        Assert.Contains("outside the file", Mutate(good, b => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(52 + 4), 0x7FFFFFF0)));
    }

    [Fact]
    public void Random_corruption_never_throws_and_never_writes_outside_ram()
    {
        var good = ElfBuilder.Build(false, 62, 0x100000, Code, 0x100000, bss: 0x1000);
        Gen.Select(Gen.Int[0, good.Length - 1].Array[1, 16], Gen.Byte.Array[16]).Sample((positions, values) =>
        {
            var f = (byte[])good.Clone();
            for (int i = 0; i < positions.Length; i++)
                f[positions[i]] = values[i];
            if (!ElfImage.TryParse(f, out var image, out _))
                return;
            var mem = new ByteArrayGuestMemory(4 << 20);
            PvhLoader.TryLoad(image!, f, "x", [], (ulong)mem.Bytes.Length, mem, out _, out _);
        }, iter: 3000);
    }

    [Fact]
    public void Segments_beyond_guest_ram_are_refused()
    {
        var elf = ElfBuilder.Build(false, 3, 0x3FF000, Code, 0x3FF000, bss: 0x2000);
        Assert.True(ElfImage.TryParse(elf, out var image, out _));
        var mem = new ByteArrayGuestMemory(4 << 20);
        Assert.False(PvhLoader.TryLoad(image!, elf, "", [], 4 << 20, mem, out _, out string error));
        Assert.Contains("does not fit", error);
    }

    [Fact]
    public void Builds_start_info_with_cmdline_modules_and_memory_map()
    {
        var elf = ElfBuilder.Build(false, 3, 0x100000, Code, 0x100001, bss: 0x1800);
        Assert.True(ElfImage.TryParse(elf, out var image, out _));
        var mem = new ByteArrayGuestMemory(8 << 20);
        var modules = new[] { new PvhModule(Encoding.ASCII.GetBytes("initrd-bytes"), "mod0 args"), new PvhModule(new byte[5000], "") };
        Assert.True(PvhLoader.TryLoad(image!, elf, "console=hvc0 quiet", modules, 8 << 20, mem, out var info, out string error), error);
        Assert.Equal(0x100001u, info.Entry);
        Assert.Equal(Code, mem.Bytes[0x100000..0x100004]);

        var si = mem.Bytes.AsSpan((int)info.StartInfoAddress);
        Assert.Equal(0u, info.StartInfoAddress % 4096);
        Assert.True(info.StartInfoAddress >= info.KernelEnd);
        Assert.Equal(PvhLoader.StartInfoMagic, BinaryPrimitives.ReadUInt32LittleEndian(si));
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(si[4..]));
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(si[12..]));
        Assert.Equal("console=hvc0 quiet", CString(mem.Bytes, BinaryPrimitives.ReadUInt64LittleEndian(si[24..])));

        ulong modlist = BinaryPrimitives.ReadUInt64LittleEndian(si[16..]);
        var m0 = mem.Bytes.AsSpan((int)modlist);
        ulong m0Addr = BinaryPrimitives.ReadUInt64LittleEndian(m0);
        Assert.Equal(0ul, m0Addr % 4096);
        Assert.Equal(12ul, BinaryPrimitives.ReadUInt64LittleEndian(m0[8..]));
        Assert.Equal("initrd-bytes", Encoding.ASCII.GetString(mem.Bytes, (int)m0Addr, 12));
        Assert.Equal("mod0 args", CString(mem.Bytes, BinaryPrimitives.ReadUInt64LittleEndian(m0[16..])));
        var m1 = mem.Bytes.AsSpan((int)modlist + 32);
        Assert.Equal(5000ul, BinaryPrimitives.ReadUInt64LittleEndian(m1[8..]));
        Assert.Equal(0ul, BinaryPrimitives.ReadUInt64LittleEndian(m1[16..]));

        ulong memmap = BinaryPrimitives.ReadUInt64LittleEndian(si[40..]);
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(si[48..]));
        var e = mem.Bytes.AsSpan((int)memmap);
        Assert.Equal(0ul, BinaryPrimitives.ReadUInt64LittleEndian(e));
        Assert.Equal(8ul << 20, BinaryPrimitives.ReadUInt64LittleEndian(e[8..]));
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(e[16..]));
    }

    [Fact]
    public void Too_long_command_line_is_refused()
    {
        var elf = ElfBuilder.Build(false, 3, 0x100000, Code, 0x100000);
        Assert.True(ElfImage.TryParse(elf, out var image, out _));
        var mem = new ByteArrayGuestMemory(4 << 20);
        Assert.False(PvhLoader.TryLoad(image!, elf, new string('a', 5000), [], 4 << 20, mem, out _, out string error));
        Assert.Contains("command line", error);
    }

    [Fact]
    public void Loader_layout_constants_match_VmmKit_Hypercall_structs()
    {
        Assert.Equal(PvhLoader.StartInfoSize, System.Runtime.CompilerServices.Unsafe.SizeOf<Hypercall.HvmStartInfo>());
        Assert.Equal(PvhLoader.ModlistEntrySize, System.Runtime.CompilerServices.Unsafe.SizeOf<Hypercall.HvmModlistEntry>());
        Assert.Equal(PvhLoader.MemmapEntrySize, System.Runtime.CompilerServices.Unsafe.SizeOf<Hypercall.HvmMemmapTableEntry>());
        Assert.Equal(PvhLoader.StartInfoMagic, Hypercall.HvmStartInfo.MagicValue);
    }

    private static string Mutate(byte[] good, Action<byte[]> change)
    {
        var f = (byte[])good.Clone();
        change(f);
        Assert.False(ElfImage.TryParse(f, out _, out string error));
        return error;
    }

    private static string CString(byte[] mem, ulong addr)
    {
        int end = Array.IndexOf(mem, (byte)0, (int)addr);
        return Encoding.UTF8.GetString(mem, (int)addr, end - (int)addr);
    }

    // Layout of struct hvm_start_info against Xen's header (xen/arch-x86/hvm/start_info.h), the one the C guests use.
    [Fact]
    public void Start_info_layout_matches_xen_header()
    {
        const string header = "xen/arch-x86/hvm/start_info.h";
        var v = VmmKit.TestSupport.XenAbiLayout.Evaluate([header], [
            "sizeof(struct hvm_start_info)", "sizeof(struct hvm_modlist_entry)", "sizeof(struct hvm_memmap_table_entry)",
            "offsetof(struct hvm_start_info, modlist_paddr)", "offsetof(struct hvm_start_info, cmdline_paddr)",
            "offsetof(struct hvm_start_info, memmap_paddr)", "offsetof(struct hvm_start_info, memmap_entries)",
            "XEN_HVM_START_MAGIC_VALUE"]);
        Assert.Equal([PvhLoader.StartInfoSize, PvhLoader.ModlistEntrySize, PvhLoader.MemmapEntrySize, 16, 24, 40, 48, PvhLoader.StartInfoMagic], v);
    }
}
