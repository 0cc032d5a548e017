using VmmKit.Hypercall;

namespace VmmKit.Boot;

/// <summary>
/// Builds a PVH guest's initial memory (Xen docs/misc/pvh.pandoc): the kernel's PT_LOAD segments at
/// their physical addresses (p_paddr), then, page aligned above the kernel, each module, then one
/// area holding <c>struct hvm_start_info</c> version 1 (see <see cref="HvmStartInfoBuilder"/>).
/// The vCPU then starts at XEN_ELFNOTE_PHYS32_ENTRY in 32-bit flat protected mode with paging off
/// and EBX = the start info's address. Everything must lie inside the domain's RAM and below 4 GiB
/// (the 32-bit entry state cannot reach above).
/// </summary>
public static class PvhLoader
{
    /// <summary>XEN_HVM_START_MAGIC_VALUE (xen/include/public/arch-x86/hvm/start_info.h).</summary>
    public const uint StartInfoMagic = HvmStartInfo.MagicValue;

    /// <summary>sizeof(struct hvm_start_info) for version 1.</summary>
    public const int StartInfoSize = 56;

    /// <summary>sizeof(struct hvm_modlist_entry).</summary>
    public const int ModlistEntrySize = 32;

    /// <summary>sizeof(struct hvm_memmap_table_entry).</summary>
    public const int MemmapEntrySize = 24;

    /// <summary>The longest command line accepted (bytes, without the terminating NUL).</summary>
    public const int MaxCommandLine = HvmStartInfoBuilder.MaxCommandLine;

    /// <summary>The most modules accepted.</summary>
    public const int MaxModules = HvmStartInfoBuilder.MaxModules;

    private const ulong PageSize = 4096;
    private const ulong FourGiB = 1UL << 32;

    /// <summary>
    /// Loads <paramref name="image"/> (parsed from <paramref name="file"/>) into a domain of
    /// <paramref name="memorySize"/> bytes of RAM starting at guest-physical 0; the e820 map has one
    /// RAM entry covering all of it.
    /// </summary>
    /// <param name="image">The parsed kernel.</param>
    /// <param name="file">The file <paramref name="image"/> was parsed from.</param>
    /// <param name="commandLine">The kernel command line, empty for none.</param>
    /// <param name="modules">Boot modules, in the order the guest sees them.</param>
    /// <param name="memorySize">Bytes of RAM at guest-physical 0.</param>
    /// <param name="memory">Where to write (the domain's guest-physical memory).</param>
    /// <param name="info">The entry point and start info address, on success.</param>
    /// <param name="error">A one-line reason on failure, empty on success.</param>
    /// <returns>True when everything was written.</returns>
    public static bool TryLoad(ElfImage image, ReadOnlySpan<byte> file, string commandLine, IReadOnlyList<PvhModule> modules,
        ulong memorySize, IGuestPhysicalWriter memory, out PvhBootInfo info, out string error) =>
        TryLoad(image, file, commandLine, modules, memorySize, [new HvmMemmapTableEntry { Addr = 0, Size = memorySize, Type = (uint)HvmMemmapType.Ram }],
            memory, out info, out error);

    /// <summary>
    /// Loads <paramref name="image"/> like the other overload, with the e820 map given by the caller
    /// (RAM must still start at 0 and the loader uses only the first <paramref name="memorySize"/> bytes).
    /// </summary>
    /// <param name="image">The parsed kernel.</param>
    /// <param name="file">The file <paramref name="image"/> was parsed from.</param>
    /// <param name="commandLine">The kernel command line, empty for none.</param>
    /// <param name="modules">Boot modules, in the order the guest sees them.</param>
    /// <param name="memorySize">Bytes of RAM at guest-physical 0 the loader may use.</param>
    /// <param name="memoryMap">The e820 map passed in <c>memmap_paddr</c>.</param>
    /// <param name="memory">Where to write (the domain's guest-physical memory).</param>
    /// <param name="info">The entry point and start info address, on success.</param>
    /// <param name="error">A one-line reason on failure, empty on success.</param>
    /// <returns>True when everything was written.</returns>
    public static bool TryLoad(ElfImage image, ReadOnlySpan<byte> file, string commandLine, IReadOnlyList<PvhModule> modules,
        ulong memorySize, IReadOnlyList<HvmMemmapTableEntry> memoryMap, IGuestPhysicalWriter memory, out PvhBootInfo info, out string error)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(modules);
        ArgumentNullException.ThrowIfNull(memoryMap);
        ArgumentNullException.ThrowIfNull(memory);
        info = default;
        ulong ramTop = Math.Min(memorySize, FourGiB);
        if (modules.Count > MaxModules)
            return Fail($"more than {MaxModules} modules", out error);
        if (image.Phys32Entry is not { } entry)
            return Fail("not a PVH kernel: no XEN_ELFNOTE_PHYS32_ENTRY note", out error);
        if (entry >= ramTop)
            return Fail($"entry point 0x{entry:x} is outside guest RAM (0x{ramTop:x} bytes)", out error);

        // The whole kernel range (libelf's pstart..pend, which a loadable segment of no memory can stretch) must fit:
        // modules and the start info are placed above it.
        if (image.HighestAddress > ramTop)
            return Fail($"kernel 0x{image.LowestAddress:x}-0x{image.HighestAddress:x} does not fit in 0x{ramTop:x} bytes of guest RAM", out error);

        foreach (var s in image.Segments)
        {
            if (s.End > ramTop)
                return Fail($"segment 0x{s.PhysicalAddress:x}+0x{s.MemorySize:x} does not fit in 0x{ramTop:x} bytes of guest RAM", out error);
            if (s.FileOffset > (ulong)file.Length || s.FileSize > (ulong)file.Length - s.FileOffset)
                return Fail("segment outside the file", out error);
            if (!memory.TryWrite(s.PhysicalAddress, file.Slice((int)s.FileOffset, (int)s.FileSize))
                || !TryZero(memory, s.PhysicalAddress + s.FileSize, s.MemorySize - s.FileSize))
                return Fail($"cannot write segment at 0x{s.PhysicalAddress:x}", out error);
        }

        var builder = new HvmStartInfoBuilder { CommandLine = commandLine };
        foreach (var e in memoryMap)
            builder.AddMemory(e.Addr, e.Size, (HvmMemmapType)e.Type);

        ulong kernelEnd = image.HighestAddress;
        ulong next = AlignUp(kernelEnd);
        for (int i = 0; i < modules.Count; i++)
        {
            ulong size = (ulong)modules[i].Data.Length;
            if (next > ramTop || size > ramTop - next)
                return Fail($"module {i} ({size} bytes) does not fit in guest RAM", out error);
            if (!memory.TryWrite(next, modules[i].Data))
                return Fail($"cannot write module {i}", out error);
            builder.AddModule(next, size, modules[i].CommandLine);
            next = AlignUp(next + size);
        }

        ulong infoBase = next;
        if (!builder.TryBuild(infoBase, out byte[] area, out error))
            return false;
        if (infoBase > ramTop || (ulong)area.Length > ramTop - infoBase)
            return Fail("no room for hvm_start_info in guest RAM", out error);
        if (!memory.TryWrite(infoBase, area))
            return Fail("cannot write hvm_start_info", out error);

        info = new PvhBootInfo(entry, (uint)infoBase, kernelEnd, AlignUp(infoBase + (ulong)area.Length));
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
