using System.Buffers.Binary;

namespace VmmKit.Boot;

/// <summary>
/// Walks note areas the way Xen 4.17's libelf-dominfo.c does (elf_xen_parse_notes, elf_xen_parse_note): every
/// note named "Xen" counts, a later XEN_ELFNOTE_PHYS32_ENTRY overwrites an earlier one, and the walk stops after
/// ELF_MAX_TOTAL_NOTE_COUNT notes over all the areas of one file. Unlike libelf, a note must lie inside its area
/// (libelf reads on into the rest of the file): the walk stops at one that does not.
/// </summary>
internal sealed class XenElfNoteScan
{
    /// <summary>ELF_MAX_TOTAL_NOTE_COUNT (xen/include/xen/libelf.h).</summary>
    public const int MaxTotalNotes = 65536;

    /// <summary>UNSET_ADDR32: libelf's phys_entry is a uint32_t with all ones meaning "no note".</summary>
    private const uint Unset = uint.MaxValue;

    /// <summary>XEN_ELFNOTE_FEATURES (xen/include/public/elfnote.h).</summary>
    private const uint FeaturesNote = 10;

    /// <summary>XEN_ELFNOTE_VIRT_BASE, XEN_ELFNOTE_PADDR_OFFSET, XEN_ELFNOTE_INIT_P2M (elfnote.h).</summary>
    private const uint VirtBaseNote = 3, PaddrOffsetNote = 4, InitP2mNote = 15;

    /// <summary>UNSET_ADDR (xen/include/xen/libelf.h): a 64-bit address note's "no note".</summary>
    public const ulong UnsetAddress = ulong.MaxValue;

    /// <summary>ELF_MAX_STRING_LENGTH (xen/include/xen/libelf.h).</summary>
    private const int MaxStringLength = 4096;

    private uint _phys32 = Unset;

    /// <summary>Notes walked so far, in every area.</summary>
    public int TotalNotes { get; private set; }

    /// <summary>Notes named "Xen" walked so far (elf_xen_parse's xen_elfnotes).</summary>
    public int XenNotes { get; private set; }

    /// <summary>The last PHYS32_ENTRY value, or null when none was seen or the last one was all ones.</summary>
    public uint? Phys32Entry => _phys32 == Unset ? null : _phys32;

    /// <summary>The last XEN_ELFNOTE_VIRT_BASE, or <see cref="UnsetAddress"/>.</summary>
    public ulong VirtBase { get; private set; } = UnsetAddress;

    /// <summary>The last XEN_ELFNOTE_PADDR_OFFSET, or <see cref="UnsetAddress"/>.</summary>
    public ulong PaddrOffset { get; private set; } = UnsetAddress;

    /// <summary>The last XEN_ELFNOTE_INIT_P2M, or <see cref="UnsetAddress"/>.</summary>
    public ulong P2mBase { get; private set; } = UnsetAddress;

    /// <summary>The XENFEAT_* bits the FEATURES notes require ('!' prefix), submap 0.</summary>
    public uint RequiredFeatures { get; private set; }

    /// <summary>Why libelf refuses the notes (elf_xen_parse_note failed), or null.</summary>
    public string? Error { get; private set; }

    /// <summary>Walks one PT_NOTE segment or SHT_NOTE section; stops for good once <see cref="Error"/> is set.</summary>
    /// <param name="area">The area's bytes.</param>
    public void Walk(ReadOnlySpan<byte> area)
    {
        int pos = 0;
        while (Error is null && area.Length - pos >= 12)
        {
            if (TotalNotes >= MaxTotalNotes)
                return;                                   // elf_xen_parse_notes: "too many ELF notes"
            TotalNotes++;
            uint namesz = BinaryPrimitives.ReadUInt32LittleEndian(area[pos..]);
            uint descsz = BinaryPrimitives.ReadUInt32LittleEndian(area[(pos + 4)..]);
            uint type = BinaryPrimitives.ReadUInt32LittleEndian(area[(pos + 8)..]);
            ulong desc = (ulong)pos + 12 + Align4(namesz);
            ulong next = desc + Align4(descsz);

            // strcmp(elf_note_name(note), "Xen"): the name is a C string, whatever namesz says.
            if (area.Length - pos - 12 >= 4 && area.Slice(pos + 12, 4).SequenceEqual("Xen\0"u8))
            {
                XenNotes++;
                if (type is XenElfNotes.Phys32Entry or VirtBaseNote or PaddrOffsetNote or InitP2mNote)
                {
                    if (desc + descsz > (ulong)area.Length)
                        return;
                    ulong value = Numeric(area.Slice((int)desc, (int)descsz));
                    switch (type)
                    {
                        case XenElfNotes.Phys32Entry:
                            _phys32 = (uint)value;    // parms->phys_entry = val: stored in a uint32_t
                            break;
                        case VirtBaseNote:
                            VirtBase = value;
                            break;
                        case PaddrOffsetNote:
                            PaddrOffset = value;
                            break;
                        default:
                            P2mBase = value;
                            break;
                    }
                }
                else if (type == FeaturesNote && desc <= (ulong)area.Length
                    && TryCString(area[(int)desc..], out var features))
                {
                    if (XenElfFeatures.TryParseRequired(features, out uint required))
                        RequiredFeatures |= required;
                    else
                        Error = "XEN_ELFNOTE_FEATURES requires a feature Xen does not know";
                }
            }

            if (next > (ulong)area.Length)
                return;
            pos = (int)next;
        }
    }

    // elf_strval: a NUL-terminated string of at most ELF_MAX_STRING_LENGTH characters (here inside the area);
    // elf_xen_parse_note ignores a string note without one.
    private static bool TryCString(ReadOnlySpan<byte> s, out ReadOnlySpan<byte> value)
    {
        int nul = s[..Math.Min(s.Length, MaxStringLength + 1)].IndexOf((byte)0);
        value = nul < 0 ? default : s[..nul];
        return nul >= 0;
    }

    private static ulong Align4(uint v) => ((ulong)v + 3) & ~3UL;

    // elf_note_numeric: a descriptor of 1, 2, 4 or 8 bytes; any other size reads as 0.
    private static ulong Numeric(ReadOnlySpan<byte> d) => d.Length switch
    {
        1 => d[0],
        2 => BinaryPrimitives.ReadUInt16LittleEndian(d),
        4 => BinaryPrimitives.ReadUInt32LittleEndian(d),
        8 => BinaryPrimitives.ReadUInt64LittleEndian(d),
        _ => 0,
    };
}
