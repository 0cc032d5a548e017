using System.Buffers.Binary;

namespace VmmKit.Boot;

/// <summary>
/// A parsed, validated PVH kernel: an ELF32 or ELF64 little-endian x86 executable (Xen's own test
/// kernels are ELF32 with EM_X86_64), its PT_LOAD segments and its XEN_ELFNOTE_PHYS32_ENTRY.
/// The file is hostile input: every offset, size and count is checked before use, and a bad file
/// gives an error message, never an exception or an out-of-range read.
/// </summary>
public sealed class ElfImage
{
    // ELF gABI constants (System V ABI, chapter 4).
    private const byte ElfClass32 = 1, ElfClass64 = 2, ElfDataLittleEndian = 1, EvCurrent = 1;
    private const ushort EtExec = 2, EtDyn = 3, Em386 = 3, EmX86_64 = 62;
    private const uint PtLoad = 1, PtNote = 4, ShtNote = 7;
    private const int MaxProgramHeaders = 4096, MaxSectionHeaders = 65535;

    private ElfImage(bool is64, ushort machine, ulong entry, ElfLoadSegment[] segments, uint? phys32Entry)
    {
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

    /// <summary>The PT_LOAD segments with a non-zero memory size, in file order.</summary>
    public IReadOnlyList<ElfLoadSegment> Segments { get; }

    /// <summary>The XEN_ELFNOTE_PHYS32_ENTRY value (0 is a valid entry point), or null without the note.</summary>
    public uint? Phys32Entry { get; }

    /// <summary>Lowest guest-physical address any segment covers.</summary>
    public ulong LowestAddress => Segments.Count == 0 ? 0 : Segments.Min(s => s.PhysicalAddress);

    /// <summary>First guest-physical address above every segment.</summary>
    public ulong HighestAddress => Segments.Count == 0 ? 0 : Segments.Max(s => s.End);

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

        int phMin = is64 ? 56 : 32, shMin = is64 ? 64 : 40;
        if (phnum == 0)
            return "no program headers";
        if (phnum > MaxProgramHeaders || phentsize < phMin)
            return "malformed program header table";
        if (!InFile(f, phoff, (ulong)phnum * (ulong)phentsize))
            return "program header table outside the file";

        var segments = new List<ElfLoadSegment>();
        uint? phys32 = null;
        for (int i = 0; i < phnum; i++)
        {
            var ph = f.Slice((int)(phoff + (ulong)(i * phentsize)), phentsize);
            uint ptype = U32(ph, 0);
            ulong offset, paddr, filesz, memsz;
            if (is64)
            {
                offset = U64(ph, 8); paddr = U64(ph, 24); filesz = U64(ph, 32); memsz = U64(ph, 40);
            }
            else
            {
                offset = U32(ph, 4); paddr = U32(ph, 12); filesz = U32(ph, 16); memsz = U32(ph, 20);
            }

            if (ptype == PtLoad)
            {
                if (filesz > memsz)
                    return $"PT_LOAD {i}: p_filesz 0x{filesz:x} exceeds p_memsz 0x{memsz:x}";
                if (!InFile(f, offset, filesz))
                    return $"PT_LOAD {i}: file range outside the file";
                if (paddr + memsz < paddr)
                    return $"PT_LOAD {i}: address range wraps";
                if (memsz != 0)
                    segments.Add(new ElfLoadSegment(paddr, offset, filesz, memsz));
            }
            else if (ptype == PtNote && phys32 is null)
            {
                if (!InFile(f, offset, filesz))
                    return $"PT_NOTE {i}: outside the file";
                phys32 = XenElfNotes.FindPhys32Entry(f.Slice((int)offset, (int)filesz));
            }
        }

        if (segments.Count == 0)
            return "no loadable segments";

        // Xen's libelf looks in section headers when no program header carried the notes.
        if (phys32 is null && shnum != 0 && shoff != 0)
        {
            if (shnum > MaxSectionHeaders || shentsize < shMin || !InFile(f, shoff, (ulong)shnum * (ulong)shentsize))
                return "malformed section header table";
            for (int i = 0; i < shnum && phys32 is null; i++)
            {
                var sh = f.Slice((int)(shoff + (ulong)(i * shentsize)), shentsize);
                if (U32(sh, 4) != ShtNote)
                    continue;
                ulong offset = is64 ? U64(sh, 24) : U32(sh, 16);
                ulong size = is64 ? U64(sh, 32) : U32(sh, 20);
                if (!InFile(f, offset, size))
                    return $"SHT_NOTE section {i}: outside the file";
                phys32 = XenElfNotes.FindPhys32Entry(f.Slice((int)offset, (int)size));
            }
        }

        if (phys32 is null)
            return "not a PVH kernel: no XEN_ELFNOTE_PHYS32_ENTRY note";

        image = new ElfImage(is64, machine, entry, segments.ToArray(), phys32);
        return "";
    }

    private static bool InFile(ReadOnlySpan<byte> f, ulong offset, ulong size) =>
        offset <= (ulong)f.Length && size <= (ulong)f.Length - offset;

    private static ushort U16(ReadOnlySpan<byte> s, int o) => BinaryPrimitives.ReadUInt16LittleEndian(s[o..]);

    private static uint U32(ReadOnlySpan<byte> s, int o) => BinaryPrimitives.ReadUInt32LittleEndian(s[o..]);

    private static ulong U64(ReadOnlySpan<byte> s, int o) => BinaryPrimitives.ReadUInt64LittleEndian(s[o..]);
}
