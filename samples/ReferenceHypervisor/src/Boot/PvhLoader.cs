using System.Buffers.Binary;
using System.Text;

namespace VmmKit.ReferenceHypervisor.Boot;

/// <summary>
/// Builds a PVH guest's initial memory (Xen docs/misc/pvh.pandoc): the kernel's PT_LOAD segments at
/// their physical addresses, then, page aligned above the kernel, each module, then one area holding
/// <c>struct hvm_start_info</c> (version 1), the module list, the e820 memory map and the command lines.
/// The vCPU then starts at XEN_ELFNOTE_PHYS32_ENTRY with EBX = the start info's address.
/// Everything must lie inside the domain's RAM and below 4 GiB (the 32-bit entry state cannot reach above).
/// </summary>
internal static class PvhLoader
{
    /// <summary>XEN_HVM_START_MAGIC_VALUE (xen/include/public/arch-x86/hvm/start_info.h).</summary>
    public const uint StartInfoMagic = 0x336ec578;

    /// <summary>sizeof(struct hvm_start_info) for version 1.</summary>
    public const int StartInfoSize = 56;

    /// <summary>sizeof(struct hvm_modlist_entry).</summary>
    public const int ModlistEntrySize = 32;

    /// <summary>sizeof(struct hvm_memmap_table_entry).</summary>
    public const int MemmapEntrySize = 24;

    /// <summary>The longest command line we accept (bytes, without the terminating NUL).</summary>
    public const int MaxCommandLine = 4096;

    /// <summary>The most modules we accept.</summary>
    public const int MaxModules = 64;

    private const ulong PageSize = 4096;
    private const ulong FourGiB = 1UL << 32;

    /// <summary>
    /// Loads <paramref name="image"/> (parsed from <paramref name="file"/>) into a domain of
    /// <paramref name="memorySize"/> bytes of RAM starting at guest-physical 0.
    /// </summary>
    public static bool TryLoad(ElfImage image, ReadOnlySpan<byte> file, string commandLine, IReadOnlyList<PvhModule> modules,
        ulong memorySize, IGuestPhysicalWriter memory, out PvhBootInfo info, out string error)
    {
        info = default;
        ulong ramTop = Math.Min(memorySize, FourGiB);
        byte[] cmdline = Encoding.UTF8.GetBytes(commandLine);
        if (cmdline.Length > MaxCommandLine)
            return Fail($"command line longer than {MaxCommandLine} bytes", out error);
        if (modules.Count > MaxModules)
            return Fail($"more than {MaxModules} modules", out error);
        if (image.Phys32Entry is not { } entry || entry >= ramTop)
            return Fail($"entry point 0x{image.Phys32Entry:x} is outside guest RAM (0x{ramTop:x} bytes)", out error);

        foreach (var s in image.Segments)
        {
            if (s.End > ramTop)
                return Fail($"segment 0x{s.PhysicalAddress:x}+0x{s.MemorySize:x} does not fit in 0x{ramTop:x} bytes of guest RAM", out error);
            if (s.FileOffset + s.FileSize > (ulong)file.Length)
                return Fail("segment outside the file", out error);
            if (!memory.TryWrite(s.PhysicalAddress, file.Slice((int)s.FileOffset, (int)s.FileSize))
                || !TryZero(memory, s.PhysicalAddress + s.FileSize, s.MemorySize - s.FileSize))
                return Fail($"cannot write segment at 0x{s.PhysicalAddress:x}", out error);
        }

        ulong kernelEnd = image.HighestAddress;
        ulong next = AlignUp(kernelEnd);
        var modAddrs = new ulong[modules.Count];
        for (int i = 0; i < modules.Count; i++)
        {
            ulong size = (ulong)modules[i].Data.Length;
            if (next > ramTop || size > ramTop - next)
                return Fail($"module {i} ({size} bytes) does not fit in guest RAM", out error);
            if (!memory.TryWrite(next, modules[i].Data))
                return Fail($"cannot write module {i}", out error);
            modAddrs[i] = next;
            next = AlignUp(next + size);
        }

        // The info area: start_info | modlist | memmap | cmdline | module cmdlines.
        var modCmdlines = modules.Select(m => Encoding.UTF8.GetBytes(m.CommandLine)).ToArray();
        if (modCmdlines.Any(c => c.Length > MaxCommandLine))
            return Fail($"module command line longer than {MaxCommandLine} bytes", out error);
        ulong infoBase = next;
        int memmapCount = 1;
        int modlistOff = StartInfoSize;
        int memmapOff = modlistOff + (modules.Count * ModlistEntrySize);
        int cmdlineOff = memmapOff + (memmapCount * MemmapEntrySize);
        int size2 = cmdlineOff + cmdline.Length + 1 + modCmdlines.Sum(c => c.Length + 1);
        if (infoBase > ramTop || (ulong)size2 > ramTop - infoBase)
            return Fail("no room for hvm_start_info in guest RAM", out error);

        var area = new byte[size2];
        var si = area.AsSpan();
        BinaryPrimitives.WriteUInt32LittleEndian(si[0..], StartInfoMagic);
        BinaryPrimitives.WriteUInt32LittleEndian(si[4..], 1);                  // version
        BinaryPrimitives.WriteUInt32LittleEndian(si[8..], 0);                  // flags
        BinaryPrimitives.WriteUInt32LittleEndian(si[12..], (uint)modules.Count);
        BinaryPrimitives.WriteUInt64LittleEndian(si[16..], modules.Count == 0 ? 0 : infoBase + (ulong)modlistOff);
        BinaryPrimitives.WriteUInt64LittleEndian(si[24..], cmdline.Length == 0 ? 0 : infoBase + (ulong)cmdlineOff);
        BinaryPrimitives.WriteUInt64LittleEndian(si[32..], 0);                 // rsdp_paddr: no ACPI
        BinaryPrimitives.WriteUInt64LittleEndian(si[40..], infoBase + (ulong)memmapOff);
        BinaryPrimitives.WriteUInt32LittleEndian(si[48..], (uint)memmapCount);

        // One RAM entry for the whole of the domain's memory (the loader's areas are RAM the guest owns).
        var mm = si[memmapOff..];
        BinaryPrimitives.WriteUInt64LittleEndian(mm[0..], 0);
        BinaryPrimitives.WriteUInt64LittleEndian(mm[8..], memorySize);
        BinaryPrimitives.WriteUInt32LittleEndian(mm[16..], (uint)E820Type.Ram);

        cmdline.CopyTo(si[cmdlineOff..]);
        int strOff = cmdlineOff + cmdline.Length + 1;
        for (int i = 0; i < modules.Count; i++)
        {
            var e = si[(modlistOff + (i * ModlistEntrySize))..];
            BinaryPrimitives.WriteUInt64LittleEndian(e[0..], modAddrs[i]);
            BinaryPrimitives.WriteUInt64LittleEndian(e[8..], (ulong)modules[i].Data.Length);
            BinaryPrimitives.WriteUInt64LittleEndian(e[16..], modCmdlines[i].Length == 0 ? 0 : infoBase + (ulong)strOff);
            modCmdlines[i].CopyTo(si[strOff..]);
            strOff += modCmdlines[i].Length + 1;
        }

        if (!memory.TryWrite(infoBase, area))
            return Fail("cannot write hvm_start_info", out error);

        info = new PvhBootInfo(entry, (uint)infoBase, kernelEnd, AlignUp(infoBase + (ulong)size2));
        error = "";
        return true;
    }

    private static bool TryZero(IGuestPhysicalWriter memory, ulong address, ulong length)
    {
        ReadOnlySpan<byte> zeros = stackalloc byte[4096];
        while (length != 0)
        {
            int n = (int)Math.Min(length, (ulong)zeros.Length);
            if (!memory.TryWrite(address, zeros[..n]))
                return false;
            address += (ulong)n;
            length -= (ulong)n;
        }

        return true;
    }

    private static ulong AlignUp(ulong v) => (v + PageSize - 1) & ~(PageSize - 1);

    private static bool Fail(string message, out string error)
    {
        error = message;
        return false;
    }
}
