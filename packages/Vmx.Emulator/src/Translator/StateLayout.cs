using System.Runtime.InteropServices;
using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Translator;

/// <summary>
/// Byte offsets of the <see cref="CpuState"/> and <see cref="TlbEntry"/> fields that translated code addresses
/// (measured on the structs themselves, so a layout change cannot silently break the translator).
/// </summary>
internal static unsafe class StateLayout
{
    public static readonly int Rip, Rflags, InstructionsRetired, LazyResult, LazySrc1, LazySrc2, LazyOp, LazySize;
    /// <summary>First field after the lazy-flags group (segment registers onwards).</summary>
    public static readonly int AfterLazy;
    public static readonly int TlbReadTag, TlbWriteTag, TlbAddend;
    public static readonly int TlbEntrySize = sizeof(TlbEntry);

    static StateLayout()
    {
        var s = (CpuState*)NativeMemory.Alloc((nuint)sizeof(CpuState));
        Rip = Offset(s, &s->Rip);
        Rflags = Offset(s, &s->Rflags);
        InstructionsRetired = Offset(s, &s->InstructionsRetired);
        LazyResult = Offset(s, &s->LazyResult);
        LazySrc1 = Offset(s, &s->LazySrc1);
        LazySrc2 = Offset(s, &s->LazySrc2);
        LazyOp = Offset(s, &s->LazyOp);
        LazySize = Offset(s, &s->LazySize);
        AfterLazy = Offset(s, &s->Es);
        NativeMemory.Free(s);
        var e = (TlbEntry*)NativeMemory.Alloc((nuint)sizeof(TlbEntry));
        TlbReadTag = Offset(e, &e->ReadTag);
        TlbWriteTag = Offset(e, &e->WriteTag);
        TlbAddend = Offset(e, &e->Addend);
        NativeMemory.Free(e);
    }

    private static int Offset(void* structure, void* field) => (int)((byte*)field - (byte*)structure);

    /// <summary>Offset of GPR <paramref name="index"/> (0..15, x86 encoding order; the array is the first field).</summary>
    public static int Gpr(int index) => index * 8;
}
