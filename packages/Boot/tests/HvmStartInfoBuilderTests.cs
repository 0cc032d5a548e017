using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using VmmKit.Hypercall;

namespace VmmKit.Boot.Tests;

public class HvmStartInfoBuilderTests
{
    [Fact]
    public void Lays_out_start_info_modlist_memmap_and_strings_at_absolute_addresses()
    {
        var b = new HvmStartInfoBuilder { CommandLine = "console=hvc0", RsdpAddress = 0xE0000, Flags = 3 };
        b.AddMemory(0, 0x9F000, HvmMemmapType.Ram);
        b.AddMemory(0x9F000, 0x1000, HvmMemmapType.Reserved);
        b.AddMemory(0x100000, 0x700000, HvmMemmapType.Ram);
        b.AddModule(0x200000, 1234, "initrd");
        Assert.True(b.TryBuild(0x300000, out byte[] area, out string error), error);

        var si = MemoryMarshal.Read<HvmStartInfo>(area);
        Assert.Equal(HvmStartInfo.MagicValue, si.Magic);
        Assert.Equal(1u, si.Version);
        Assert.Equal(3u, si.Flags);
        Assert.Equal(0xE0000ul, si.RsdpPaddr);
        Assert.Equal(1u, si.NrModules);
        Assert.Equal(0x300000ul + 56, si.ModlistPaddr);
        Assert.Equal(0x300000ul + 56 + 32, si.MemmapPaddr);
        Assert.Equal(3u, si.MemmapEntries);
        Assert.Equal("console=hvc0", CString(area, si.CmdlinePaddr - 0x300000));

        var mod = MemoryMarshal.Read<HvmModlistEntry>(area.AsSpan(56));
        Assert.Equal((0x200000ul, 1234ul), (mod.Paddr, mod.Size));
        Assert.Equal("initrd", CString(area, mod.CmdlinePaddr - 0x300000));

        var map = MemoryMarshal.Cast<byte, HvmMemmapTableEntry>(area.AsSpan(56 + 32, 3 * 24));
        Assert.Equal((0x9F000ul, 0x1000ul, 2u), (map[1].Addr, map[1].Size, map[1].Type));
        Assert.Equal((0x100000ul, 0x700000ul, 1u), (map[2].Addr, map[2].Size, map[2].Type));
    }

    [Fact]
    public void Empty_command_lines_and_lists_are_passed_as_address_zero()
    {
        var b = new HvmStartInfoBuilder();
        b.AddModule(0x1000, 1);
        Assert.True(b.TryBuild(0x5000, out byte[] area, out _));
        var si = MemoryMarshal.Read<HvmStartInfo>(area);
        Assert.Equal(0ul, si.CmdlinePaddr);
        Assert.Equal(0ul, si.MemmapPaddr);
        Assert.Equal(0u, si.MemmapEntries);
        Assert.Equal(0ul, MemoryMarshal.Read<HvmModlistEntry>(area.AsSpan(56)).CmdlinePaddr);
    }

    [Fact]
    public void Limits_and_wrapping_are_refused()
    {
        Assert.False(new HvmStartInfoBuilder { CommandLine = new string('x', 4097) }.TryBuild(0, out _, out string e1));
        Assert.Contains("command line", e1);
        var many = new HvmStartInfoBuilder();
        for (int i = 0; i < 65; i++)
            many.AddModule(0, 0);
        Assert.False(many.TryBuild(0, out _, out string e2));
        Assert.Contains("modules", e2);
        var map = new HvmStartInfoBuilder();
        for (int i = 0; i < 129; i++)
            map.AddMemory(0, 0, HvmMemmapType.Ram);
        Assert.False(map.TryBuild(0, out _, out string e3));
        Assert.Contains("memory map", e3);
        Assert.False(new HvmStartInfoBuilder().TryBuild(ulong.MaxValue - 8, out _, out string e4));
        Assert.Contains("wraps", e4);
        var modCmd = new HvmStartInfoBuilder();
        modCmd.AddModule(0, 0, new string('y', 4097));
        Assert.False(modCmd.TryBuild(0, out _, out _));
    }

    [Fact]
    public void A_caller_supplied_memory_map_reaches_the_guest()
    {
        var elf = ElfBuilder.Build(false, 3, 0x100000, [0xF4], 0x100000);
        Assert.True(ElfImage.TryParse(elf, out var image, out _));
        var mem = new ByteArrayGuestMemory(4 << 20);
        HvmMemmapTableEntry[] map =
        [
            new() { Addr = 0, Size = 0xA0000, Type = (uint)HvmMemmapType.Ram },
            new() { Addr = 0x100000, Size = 0x300000, Type = (uint)HvmMemmapType.Ram },
            new() { Addr = 0xFEE00000, Size = 0x1000, Type = (uint)HvmMemmapType.Reserved },
        ];
        Assert.True(PvhLoader.TryLoad(image!, elf, "", [], 4 << 20, map, mem, out var info, out string error), error);
        var si = MemoryMarshal.Read<HvmStartInfo>(mem.Bytes.AsSpan((int)info.StartInfoAddress));
        Assert.Equal(3u, si.MemmapEntries);
        var e = mem.Bytes.AsSpan((int)si.MemmapPaddr + (2 * 24));
        Assert.Equal(0xFEE00000ul, BinaryPrimitives.ReadUInt64LittleEndian(e));
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(e[16..]));
    }

    private static string CString(byte[] area, ulong offset)
    {
        int end = Array.IndexOf(area, (byte)0, (int)offset);
        return Encoding.UTF8.GetString(area, (int)offset, end - (int)offset);
    }
}
