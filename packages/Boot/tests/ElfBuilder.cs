using System.Buffers.Binary;

namespace VmmKit.Boot.Tests;

/// <summary>Writes small synthetic ELF32/ELF64 PVH kernels for loader tests.</summary>
internal static class ElfBuilder
{
    /// <summary>
    /// One PT_LOAD of <paramref name="code"/> at <paramref name="paddr"/> (memsz = code + <paramref name="bss"/>),
    /// and the PHYS32_ENTRY note in a PT_NOTE (<paramref name="noteInProgramHeaders"/>) or only in a SHT_NOTE section.
    /// </summary>
    public static byte[] Build(bool is64, ushort machine, uint paddr, byte[] code, uint entry, uint bss = 0,
        bool noteInProgramHeaders = true, bool withNote = true, int noteDescSize = 4)
    {
        int ehsize = is64 ? 64 : 52, phentsize = is64 ? 56 : 32, shentsize = is64 ? 64 : 40;
        byte[] note = withNote ? Note(noteDescSize, entry) : [];
        int phnum = noteInProgramHeaders && withNote ? 2 : 1;
        int phoff = ehsize;
        int noteOff = phoff + (phnum * phentsize);
        int codeOff = (noteOff + note.Length + 15) & ~15;
        int shoff = codeOff + code.Length;
        shoff = (shoff + 7) & ~7;
        int shnum = withNote && !noteInProgramHeaders ? 2 : 0;
        var f = new byte[shoff + (shnum * shentsize)];
        "\u007fELF"u8.CopyTo(f);
        f[4] = (byte)(is64 ? 2 : 1);
        f[5] = 1;
        f[6] = 1;
        W16(f, 16, 2);
        W16(f, 18, machine);
        W32(f, 20, 1);
        if (is64)
        {
            W64(f, 24, entry); W64(f, 32, (ulong)phoff); W64(f, 40, shnum == 0 ? 0 : (ulong)shoff);
            W16(f, 52, (ushort)ehsize); W16(f, 54, (ushort)phentsize); W16(f, 56, (ushort)phnum);
            W16(f, 58, (ushort)shentsize); W16(f, 60, (ushort)shnum);
        }
        else
        {
            W32(f, 24, entry); W32(f, 28, (uint)phoff); W32(f, 32, shnum == 0 ? 0 : (uint)shoff);
            W16(f, 40, (ushort)ehsize); W16(f, 42, (ushort)phentsize); W16(f, 44, (ushort)phnum);
            W16(f, 46, (ushort)shentsize); W16(f, 48, (ushort)shnum);
        }

        Phdr(f, is64, phoff, 1, (ulong)codeOff, paddr, (ulong)code.Length, (ulong)code.Length + bss);
        if (phnum == 2)
            Phdr(f, is64, phoff + phentsize, 4, (ulong)noteOff, 0, (ulong)note.Length, (ulong)note.Length);
        note.CopyTo(f, noteOff);
        code.CopyTo(f, codeOff);
        if (shnum == 2)
        {
            int sh = shoff + shentsize; // section 0 is the null section
            W32(f, sh + 4, 7);          // SHT_NOTE
            if (is64)
            {
                W64(f, sh + 24, (ulong)noteOff); W64(f, sh + 32, (ulong)note.Length);
            }
            else
            {
                W32(f, sh + 16, (uint)noteOff); W32(f, sh + 20, (uint)note.Length);
            }
        }

        return f;
    }

    private static byte[] Note(int descSize, uint entry)
    {
        // An unrelated note first (XEN_ELFNOTE_GUEST_OS), then PHYS32_ENTRY.
        var n = new byte[12 + 4 + 8 + 12 + 4 + ((descSize + 3) & ~3)];
        W32(n, 0, 4); W32(n, 4, 5); W32(n, 8, 6);
        "Xen\0"u8.CopyTo(n.AsSpan(12));
        "test\0"u8.CopyTo(n.AsSpan(16));
        W32(n, 24, 4); W32(n, 28, (uint)descSize); W32(n, 32, 18);
        "Xen\0"u8.CopyTo(n.AsSpan(36));
        if (descSize == 8)
            W64(n, 40, entry);
        else
            W32(n, 40, entry);
        return n;
    }

    private static void Phdr(byte[] f, bool is64, int o, uint type, ulong offset, ulong paddr, ulong filesz, ulong memsz)
    {
        W32(f, o, type);
        uint flags = type == 1 ? 7u : 4u;   // PF_R | PF_W | PF_X for PT_LOAD, PF_R for PT_NOTE
        if (is64)
        {
            W32(f, o + 4, flags);
            W64(f, o + 8, offset); W64(f, o + 16, paddr); W64(f, o + 24, paddr); W64(f, o + 32, filesz); W64(f, o + 40, memsz);
        }
        else
        {
            W32(f, o + 4, (uint)offset); W32(f, o + 8, (uint)paddr); W32(f, o + 12, (uint)paddr);
            W32(f, o + 16, (uint)filesz); W32(f, o + 20, (uint)memsz); W32(f, o + 24, flags);
        }
    }

    private static void W16(byte[] b, int o, ushort v) => BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(o), v);

    private static void W32(byte[] b, int o, uint v) => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(o), v);

    private static void W64(byte[] b, int o, ulong v) => BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(o), v);
}
