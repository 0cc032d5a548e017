using System.Runtime.InteropServices;

namespace VmmKit.Vmx.Emulator.Translator;

/// <summary>
/// Block chaining state shared by the translated code of one processor and the dispatch loop (layout fixed: translated
/// code addresses the fields at their offsets through R14, see BlockCompiler). A translated block that ends with a
/// direct branch has its own <see cref="ChainSlot"/>; an indirect branch (RET, JMP/CALL r/m) looks its target up in
/// the <see cref="JumpCacheEntry"/> table. A slot or an entry is followed only when its generation equals
/// <see cref="Generation"/>, which goes up whenever the dispatch loop's own block lookup would be dropped (a write to a
/// code frame, an EPT or paging flush, a new run, dropped translations): invalidation cuts every chain at once.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct ChainContext
{
    /// <summary>Current link generation (starts at 1, so zeroed slots and entries never match).</summary>
    public ulong Generation;
    /// <summary>
    /// Set by translated code when it returns through a branch it could not follow: the address of the direct branch's
    /// <see cref="ChainSlot"/>, or <see cref="IndirectExit"/>; 0 otherwise. The dispatch loop links it to the block it
    /// finds next.
    /// </summary>
    public ulong PendingExit;
    /// <summary>First <c>Instr</c> of the block the translated code returned from (it may have chained past the one called).</summary>
    public ulong ExitFirst;
    /// <summary>Instruction count of that block.</summary>
    public ulong ExitCount;
    /// <summary>The indirect-branch cache: <see cref="JumpCacheEntries"/> entries.</summary>
    public ulong JumpCache;

    /// <summary>Byte offsets of the fields, for the code generator.</summary>
    public const int GenerationOffset = 0, PendingExitOffset = 8, ExitFirstOffset = 16, ExitCountOffset = 24, JumpCacheOffset = 32;

    /// <summary><see cref="PendingExit"/> value of an indirect branch.</summary>
    public const ulong IndirectExit = 1;

    /// <summary>Entries of the indirect-branch cache (a power of two).</summary>
    public const int JumpCacheEntries = 4096;

    /// <summary>
    /// Cache key of a guest RIP: 64-bit code uses RIP itself; 32-bit code sets bit 62 (a 32-bit stack) or bit 61 (16-bit),
    /// which no canonical 64-bit address has alone, so translations for another mode or stack size never match.
    /// Bit <see cref="FlatKeyBit"/> marks code compiled for flat ES/CS/SS/DS (BlockCompiler), so such code and the
    /// rest never reach each other through the cache.
    /// </summary>
    public static ulong JumpKey(ulong rip, int bitness, int stackSize, bool flat) =>
        bitness == 64 ? rip : rip | (stackSize == 4 ? 1UL << 62 : 1UL << 61) | (flat ? 1UL << FlatKeyBit : 0);

    /// <summary>The <see cref="JumpKey"/> bit of 32-bit code compiled for flat segments.</summary>
    public const int FlatKeyBit = 60;

    /// <summary>Index of <paramref name="key"/> in the cache (the translated code computes the same).</summary>
    public static int JumpIndex(ulong key) => (int)((key ^ (key >> 10)) & (JumpCacheEntries - 1));
}

/// <summary>The link of one direct-branch exit of a translated block (see <see cref="ChainContext"/>).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct ChainSlot
{
    /// <summary>Generation the link was made in.</summary>
    public ulong Generation;
    /// <summary>Chain entry (after the prologue) of the target block's translated code.</summary>
    public ulong Target;
}

/// <summary>One entry of the indirect-branch cache (32 bytes, see <see cref="ChainContext"/>).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct JumpCacheEntry
{
    /// <summary><see cref="ChainContext.JumpKey"/> of the target RIP.</summary>
    public ulong Key;
    /// <summary>Generation the entry was made in.</summary>
    public ulong Generation;
    /// <summary>Chain entry of the target block's translated code.</summary>
    public ulong Target;
    /// <summary>Padding to 32 bytes.</summary>
    public ulong Unused;
}
