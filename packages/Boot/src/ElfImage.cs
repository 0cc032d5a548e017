using System.Buffers.Binary;

namespace VmmKit.Boot;

/// <summary>
/// A parsed, validated PVH kernel: an ELF32 or ELF64 little-endian x86 executable (Xen's own test
/// kernels are ELF32 with EM_X86_64), its PT_LOAD segments and its XEN_ELFNOTE_PHYS32_ENTRY.
/// The file is hostile input: every offset, size and count is checked before use, and a bad file
/// gives an error message, never an exception or an out-of-range read. What is accepted, what is
/// loaded and which note wins follow Xen 4.17's libelf (libelf-loader.c, libelf-dominfo.c) for a
/// PVH guest; packages/Boot/README.md lists where this parser is stricter.
/// </summary>
public sealed class ElfImage
{
    // ELF gABI constants (System V ABI, chapter 4).
    private const byte ElfClass32 = 1, ElfClass64 = 2, ElfDataLittleEndian = 1, EvCurrent = 1;
    private const ushort EtExec = 2, EtDyn = 3, Em386 = 3, EmX86_64 = 62;
    private const uint PtLoad = 1, PtNote = 4, ShtNote = 7;
    private const uint PfRwx = 7;
    private const int MaxProgramHeaders = 4096;
    private const ulong PageSize = 4096;

    private ElfImage(bool is64, ushort machine, ulong entry, ElfLoadSegment[] segments, uint? phys32Entry,
        ulong lowest, ulong highest)
    {
        LowestAddress = lowest;
        HighestAddress = highest;
        Is64Bit = is64;
        Machine = machine;
        ElfEntry = entry;
        Segments = segments;
        Phys32Entry = phys32Entry;
    }

    /// <summary>True for ELFCLASS64.</summary>
    public bool Is64Bit { get; }

    /// <summary>e_machine (EM_386 or EM_X86_64).</summary>
    public ushort Machine { get; }

    /// <summary>e_entry (not used by PVH, which enters at <see cref="Phys32Entry"/>).</summary>
    public ulong ElfEntry { get; }

    /// <summary>
    /// The loadable PT_LOAD segments (at least one of PF_R, PF_W, PF_X, as Xen's elf_phdr_is_loadable) with a
    /// non-zero memory size, in file order; a later one overwrites an earlier one where they overlap.
    /// </summary>
    public IReadOnlyList<ElfLoadSegment> Segments { get; }

    /// <summary>The XEN_ELFNOTE_PHYS32_ENTRY value (0 is a valid entry point), or null without the note.</summary>
    public uint? Phys32Entry { get; }

    /// <summary>
    /// True when a XEN_ELFNOTE_FEATURES note requires XENFEAT_dom0 ("!dom0"): the kernel runs only as the control
    /// domain, and Xen 4.17's toolstack refuses it for any other (xg_dom_elfloader.c, xc_dom_parse_elf_kernel).
    /// </summary>
    public bool RequiresDom0 { get; private init; }

    /// <summary>
    /// Lowest p_paddr of the loadable PT_LOAD headers, one of no memory included (libelf's pstart).
    /// </summary>
    public ulong LowestAddress { get; }

    /// <summary>
    /// First guest-physical address above every loadable PT_LOAD header, one of no memory included (libelf's pend).
    /// </summary>
    public ulong HighestAddress { get; }

    /// <summary>Parses <paramref name="file"/>; on failure returns false with a one-line reason.</summary>
    /// <param name="file">The whole ELF file (hostile input).</param>
    /// <param name="image">The parsed image on success, null on failure.</param>
    /// <param name="error">Why the file was refused; empty on success.</param>
    /// <returns>True when the file is a loadable PVH kernel.</returns>
    public static bool TryParse(ReadOnlySpan<byte> file, out ElfImage? image, out string error)
    {
        image = null;
        error = Parse(file, ref image);
        return image is not null;
    }

    private static string Parse(ReadOnlySpan<byte> f, ref ElfImage? image)
    {
        if (f.Length < 52 || f[0] != 0x7F || f[1] != (byte)'E' || f[2] != (byte)'L' || f[3] != (byte)'F')
            return "not an ELF file";
        byte cls = f[4];
        if (cls is not (ElfClass32 or ElfClass64))
            return $"unsupported ELF class {cls}";
        if (f[5] != ElfDataLittleEndian)
            return "not a little-endian ELF file";
        if (f[6] != EvCurrent)
            return $"unsupported ELF version {f[6]}";
        bool is64 = cls == ElfClass64;
        if (is64 && f.Length < 64)
            return "truncated ELF64 header";

        ushort type = U16(f, 16), machine = U16(f, 18);
        if (type is not (EtExec or EtDyn))
            return $"ELF type {type} is not an executable";
        if (machine is not (Em386 or EmX86_64))
            return $"ELF machine {machine} is not x86";

        ulong entry, phoff, shoff;
        int phentsize, phnum, shentsize, shnum;
        if (is64)
        {
            entry = U64(f, 24); phoff = U64(f, 32); shoff = U64(f, 40);
            phentsize = U16(f, 54); phnum = U16(f, 56); shentsize = U16(f, 58); shnum = U16(f, 60);
        }
        else
        {
            entry = U32(f, 24); phoff = U32(f, 28); shoff = U32(f, 32);
            phentsize = U16(f, 42); phnum = U16(f, 44); shentsize = U16(f, 46); shnum = U16(f, 48);
        }

        // elf_init (Xen 4.17's libelf-loader.c) refuses a program or section header table past the end of the
        // file, "phdr overflow" / "shdr overflow", even an empty one.
        int phMin = is64 ? 56 : 32, shMin = is64 ? 64 : 40;
        if (phnum == 0)
            return "no program headers";
        if (phnum > MaxProgramHeaders || phentsize < phMin)
            return "malformed program header table";
        if (!InFile(f, phoff, (ulong)phnum * (ulong)phentsize))
            return "program header table outside the file";
        if (shnum != 0 && shentsize < shMin)
            return "malformed section header table";
        if (!InFile(f, shoff, (ulong)shnum * (ulong)shentsize))
            return "section header table outside the file";

        var segments = new List<ElfLoadSegment>();
        var notes = new XenElfNoteScan();
        ulong pstart = ulong.MaxValue, pend = 0;
        UInt128 totalMemory = 0;
        bool anyLoadable = false;
        for (int i = 0; i < phnum; i++)
        {
            var ph = f.Slice((int)(phoff + (ulong)(i * phentsize)), phentsize);
            uint ptype = U32(ph, 0);
            uint flags;
            ulong offset, paddr, filesz, memsz;
            if (is64)
            {
                flags = U32(ph, 4); offset = U64(ph, 8); paddr = U64(ph, 24); filesz = U64(ph, 32); memsz = U64(ph, 40);
            }
            else
            {
                offset = U32(ph, 4); paddr = U32(ph, 12); filesz = U32(ph, 16); memsz = U32(ph, 20); flags = U32(ph, 24);
            }

            // elf_phdr_is_loadable: PT_LOAD with at least one of PF_R, PF_W, PF_X; other PT_LOADs are ignored.
            if (ptype == PtLoad && (flags & PfRwx) != 0)
            {
                if (filesz > memsz)
                    return $"PT_LOAD {i}: p_filesz 0x{filesz:x} exceeds p_memsz 0x{memsz:x}";
                if (!InFile(f, offset, filesz))
                    return $"PT_LOAD {i}: file range outside the file";
                if (paddr + memsz < paddr)
                    return $"PT_LOAD {i}: address range wraps";
                // elf_parse_binary: pstart/pend span every loadable header, one of no memory included.
                anyLoadable = true;
                pstart = Math.Min(pstart, paddr);
                pend = Math.Max(pend, paddr + memsz);
                totalMemory += memsz;
                if (memsz != 0)
                    segments.Add(new ElfLoadSegment(paddr, offset, filesz, memsz));
            }
            else if (ptype == PtNote && offset != 0)
            {
                // elf_xen_parse skips a PT_NOTE at offset 0 (binutils sometimes leaves p_offset unset).
                if (!InFile(f, offset, filesz))
                    return $"PT_NOTE {i}: outside the file";
                notes.Walk(f.Slice((int)offset, (int)filesz));
                if (notes.Error is { } noteError)
                    return noteError;
            }
        }

        if (!anyLoadable)
            return "no loadable segments";

        // elf_xen_parse reads the SHT_NOTE sections (all of them, from index 1) only when no note segment held a
        // Xen note.
        if (notes.XenNotes == 0)
        {
            for (int i = 1; i < shnum; i++)
            {
                var sh = f.Slice((int)(shoff + (ulong)(i * shentsize)), shentsize);
                if (U32(sh, 4) != ShtNote)
                    continue;
                ulong offset = is64 ? U64(sh, 24) : U32(sh, 16);
                ulong size = is64 ? U64(sh, 32) : U32(sh, 20);
                if (!InFile(f, offset, size))
                    return $"SHT_NOTE section {i}: outside the file";
                notes.Walk(f.Slice((int)offset, (int)size));
                if (notes.Error is { } noteError)
                    return noteError;
            }
        }

        if (notes.Phys32Entry is not { } phys32)
            return "not a PVH kernel: no XEN_ELFNOTE_PHYS32_ENTRY note";

        // elf_xen_addr_calc_check (Xen 4.17's libelf-dominfo.c). Checked before PVH forces virt_base to 0:
        if (notes.PaddrOffset != XenElfNoteScan.UnsetAddress && notes.VirtBase == XenElfNoteScan.UnsetAddress)
            return "ELF_PADDR_OFFSET set, VIRT_BASE unset";

        // for PVH virt_entry is phys_entry and virt_kstart/virt_kend are pstart/pend.
        if (phys32 < pstart || phys32 > pend)
            return $"ELF start or entries are out of bounds (entry 0x{phys32:x}, image 0x{pstart:x}-0x{pend:x})";
        if (notes.P2mBase != XenElfNoteScan.UnsetAddress && notes.P2mBase >= pstart && notes.P2mBase < pend)
            return $"P->M table base is out of bounds (XEN_ELFNOTE_INIT_P2M 0x{notes.P2mBase:x} inside the kernel)";

        // elf_load_binary: the segments may write at most twice the kernel's page-rounded span
        // (remain_allow_copy), so overlapping segments cannot make loading take unbounded time.
        UInt128 span = ((UInt128)(pend - pstart) + PageSize - 1) / PageSize * PageSize;
        if (totalMemory > 2 * span)
            return $"program segments total 0x{totalMemory:x} bytes, more than twice the kernel's 0x{span:x}";

        image = new ElfImage(is64, machine, entry, segments.ToArray(), phys32, pstart, pend)
        {
            RequiresDom0 = (notes.RequiredFeatures & (1u << XenElfFeatures.Dom0)) != 0,
        };
        return "";
    }

    private static bool InFile(ReadOnlySpan<byte> f, ulong offset, ulong size) =>
        offset <= (ulong)f.Length && size <= (ulong)f.Length - offset;

    private static ushort U16(ReadOnlySpan<byte> s, int o) => BinaryPrimitives.ReadUInt16LittleEndian(s[o..]);

    private static uint U32(ReadOnlySpan<byte> s, int o) => BinaryPrimitives.ReadUInt32LittleEndian(s[o..]);

    private static ulong U64(ReadOnlySpan<byte> s, int o) => BinaryPrimitives.ReadUInt64LittleEndian(s[o..]);
}
