using System.Buffers.Binary;

namespace VmmKit.Boot.Tests;

/// <summary>
/// Writes an ELF64 EM_X86_64 file from arbitrary program headers, SHT_NOTE sections and data blobs, for tests
/// that need shapes <see cref="ElfBuilder"/> does not make (several notes, odd flags, overlapping segments).
/// </summary>
internal sealed class ElfWriter
{
    public const uint PfR = 4, PfW = 2, PfX = 1, PtLoad = 1, PtNote = 4;

    private readonly List<byte[]> _blobs = [];
    private readonly List<(uint Type, uint Flags, int Blob, ulong? Offset, ulong Paddr, ulong? FileSize, ulong MemSize)> _phdrs = [];
    private readonly List<int> _noteSections = [];

    /// <summary>Adds a blob to the file; returns its index for <see cref="Load"/>, <see cref="NoteSegment"/>.</summary>
    public int Blob(byte[] bytes)
    {
        _blobs.Add(bytes);
        return _blobs.Count - 1;
    }

    /// <summary>A PT_LOAD of blob <paramref name="blob"/> (filesz = its length) at <paramref name="paddr"/>.</summary>
    public ElfWriter Load(ulong paddr, int blob, ulong memsz, uint flags = PfR | PfW | PfX)
    {
        _phdrs.Add((PtLoad, flags, blob, null, paddr, null, memsz));
        return this;
    }

    /// <summary>A program header with explicit fields (offset null: the blob's offset).</summary>
    public ElfWriter Phdr(uint type, uint flags, int blob, ulong? offset, ulong paddr, ulong? filesz, ulong memsz)
    {
        _phdrs.Add((type, flags, blob, offset, paddr, filesz, memsz));
        return this;
    }

    /// <summary>A PT_NOTE over blob <paramref name="blob"/>.</summary>
    public ElfWriter NoteSegment(int blob) => Phdr(PtNote, PfR, blob, null, 0, null, 0);

    /// <summary>An SHT_NOTE section over blob <paramref name="blob"/>.</summary>
    public ElfWriter NoteSection(int blob)
    {
        _noteSections.Add(blob);
        return this;
    }

    /// <summary>One ELF note: namesz, descsz, type, the NUL-terminated name and the descriptor, each 4-byte padded.</summary>
    public static byte[] Note(uint type, byte[] desc, string name = "Xen")
    {
        int namesz = name.Length + 1, nameLen = (namesz + 3) & ~3, descLen = (desc.Length + 3) & ~3;
        var n = new byte[12 + nameLen + descLen];
        BinaryPrimitives.WriteUInt32LittleEndian(n, (uint)namesz);
        BinaryPrimitives.WriteUInt32LittleEndian(n.AsSpan(4), (uint)desc.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(n.AsSpan(8), type);
        for (int i = 0; i < name.Length; i++)
            n[12 + i] = (byte)name[i];
        desc.CopyTo(n, 12 + nameLen);
        return n;
    }

    /// <summary>A XEN_ELFNOTE_PHYS32_ENTRY note with a 4-byte descriptor.</summary>
    public static byte[] Phys32(uint entry) => Note(18, BitConverter.GetBytes(entry));

    public byte[] Build()
    {
        const int ehsize = 64, phentsize = 56, shentsize = 64;
        int phoff = ehsize;
        int pos = phoff + (_phdrs.Count * phentsize);
        var offsets = new int[_blobs.Count];
        for (int i = 0; i < _blobs.Count; i++)
        {
            pos = (pos + 15) & ~15;
            offsets[i] = pos;
            pos += _blobs[i].Length;
        }

        int shnum = _noteSections.Count == 0 ? 0 : _noteSections.Count + 1;
        int shoff = (pos + 7) & ~7;
        var f = new byte[shoff + (shnum * shentsize)];
        "\u007fELF"u8.CopyTo(f);
        f[4] = 2; f[5] = 1; f[6] = 1;
        W16(f, 16, 2); W16(f, 18, 62); W32(f, 20, 1);
        W64(f, 32, (ulong)phoff); W64(f, 40, shnum == 0 ? 0 : (ulong)shoff);
        W16(f, 52, ehsize); W16(f, 54, phentsize); W16(f, 56, (ushort)_phdrs.Count);
        W16(f, 58, shentsize); W16(f, 60, (ushort)shnum);
        for (int i = 0; i < _blobs.Count; i++)
            _blobs[i].CopyTo(f, offsets[i]);
        for (int i = 0; i < _phdrs.Count; i++)
        {
            var p = _phdrs[i];
            int o = phoff + (i * phentsize);
            W32(f, o, p.Type); W32(f, o + 4, p.Flags);
            W64(f, o + 8, p.Offset ?? (ulong)offsets[p.Blob]);
            W64(f, o + 16, p.Paddr); W64(f, o + 24, p.Paddr);
            W64(f, o + 32, p.FileSize ?? (ulong)_blobs[p.Blob].Length); W64(f, o + 40, p.MemSize);
        }

        for (int i = 0; i < _noteSections.Count; i++)
        {
            int sh = shoff + ((i + 1) * shentsize);    // section 0 is the null section
            W32(f, sh + 4, 7);                         // SHT_NOTE
            W64(f, sh + 24, (ulong)offsets[_noteSections[i]]);
            W64(f, sh + 32, (ulong)_blobs[_noteSections[i]].Length);
        }

        return f;
    }

    private static void W16(byte[] b, int o, ushort v) => BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(o), v);

    private static void W32(byte[] b, int o, uint v) => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(o), v);

    private static void W64(byte[] b, int o, ulong v) => BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(o), v);
}
