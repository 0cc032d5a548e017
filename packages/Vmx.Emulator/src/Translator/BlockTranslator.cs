using System.Runtime.InteropServices;
using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Translator;

/// <summary>
/// The translating tier of one <see cref="Core"/>: counts block runs, translates hot blocks with
/// <see cref="BlockCompiler"/> into a <see cref="CodeArena"/>, and runs them from the dispatch loop
/// (<see cref="Core.RunTranslated"/>). Translations belong to their <see cref="Block"/>, so every rule that drops a
/// block (a write to its frame, an EPT or paging flush, a changed byte found at the start of a run) drops its
/// translation too.
/// </summary>
internal sealed unsafe class BlockTranslator : IDisposable
{
    /// <summary>Runs of a block before it is translated.</summary>
    public const int DefaultThreshold = 16;

    /// <summary>Arena size per processor.</summary>
    internal const int ArenaBytes = 8 << 20;

    /// <summary>The tier new cores start with (tests run the whole suite a second time with another tier).</summary>
    internal static ExecutionTier DefaultTier = ExecutionTier.Interpreter;

    /// <summary>Tests: a lock-step mismatch throws (so a whole test suite run in lock-step fails on the first one).</summary>
    internal static bool FailOnMismatch;

    /// <summary>The threshold new translators start with.</summary>
    internal static int DefaultHotThreshold = DefaultThreshold;

    private readonly CodeArena _arena;
    private readonly BlockCompiler _compiler;
    private readonly List<Block> _translated = new();
    private nint _materialize;
    private readonly WriteLog* _log;

    /// <summary>Chain slots per processor (two per block at most; running out drops every translation, like a full arena).</summary>
    private const int SlotCapacity = 1 << 16;
    private readonly ChainContext* _chain;
    private readonly ChainSlot* _slots;

    private BlockTranslator(Core core, CodeArena arena, bool lockStep)
    {
        _arena = arena;
        LockStep = lockStep;
        if (lockStep)
        {
            _log = (WriteLog*)NativeMemory.AllocZeroed((nuint)WriteLog.Bytes);
            Before = (CpuState*)NativeMemory.AlignedAlloc((nuint)sizeof(CpuState), 64);
            AfterNative = (CpuState*)NativeMemory.AlignedAlloc((nuint)sizeof(CpuState), 64);
            AfterInterpreter = (CpuState*)NativeMemory.AlignedAlloc((nuint)sizeof(CpuState), 64);
        }
        else
        {
            _chain = (ChainContext*)NativeMemory.AllocZeroed((nuint)sizeof(ChainContext));
            _chain->Generation = 1;
            _chain->JumpCache = (ulong)NativeMemory.AllocZeroed((nuint)(ChainContext.JumpCacheEntries * sizeof(JumpCacheEntry)));
            _slots = (ChainSlot*)NativeMemory.AllocZeroed((nuint)(SlotCapacity * sizeof(ChainSlot)));
        }
        AddMaterializeStub();
        _compiler = new BlockCompiler(core.Tlb, core.SegBase, _log, _materialize, _chain, _slots, SlotCapacity);
    }

    /// <summary>Chaining state (null in lock-step, which runs one block per call).</summary>
    internal ChainContext* Chain => _chain;

    /// <summary>Cuts every link between translated blocks (whatever made the dispatch loop drop its block lookup).</summary>
    public void Unchain()
    {
        if (_chain != null && !_disposed) _chain->Generation++;
    }

    /// <summary>
    /// Links the exit <paramref name="exit"/> (a <see cref="ChainContext.PendingExit"/> value) that a translated run of
    /// this generation returned through to <paramref name="b"/>, the block the dispatch loop found next at the branch
    /// target and is about to run translated as a whole (same mode and stack size as the exit's block: nothing ran in
    /// between; <paramref name="cs"/> is the CS base, which must be 0 in 32-bit code).
    /// </summary>
    public void Link(ulong exit, Block b, ulong rip, int stackSize, ulong cs)
    {
        if (b.NativeCovered != b.Count || b.NativeEntry == 0 || (b.Bitness != 64 && cs != 0)) return;
        if (exit == ChainContext.IndirectExit)
        {
            ulong key = ChainContext.JumpKey(rip, b.Bitness, stackSize, b.NativeFlat);
            JumpCacheEntry* e = (JumpCacheEntry*)_chain->JumpCache + ChainContext.JumpIndex(key);
            e->Key = key;
            e->Target = (ulong)b.NativeEntry;
            e->Generation = _chain->Generation;
            return;
        }
        var slot = (ChainSlot*)exit;
        // Code compiled for flat segments runs only while they are flat: it is linked only from code compiled alike.
        if (_compiler.SlotFlat[slot - _slots] != b.NativeFlat) return;
        slot->Target = (ulong)b.NativeEntry;
        slot->Generation = _chain->Generation;
    }

    /// <summary>Whether this host can run translated code (x86-64 only).</summary>
    public static bool HostSupported => RuntimeInformation.ProcessArchitecture == Architecture.X64;

    /// <summary>A translator for <paramref name="tier"/>, or null for the interpreter (or a host that cannot translate).</summary>
    public static BlockTranslator? Create(Core core, ExecutionTier tier, int arenaBytes = ArenaBytes)
    {
        if (tier == ExecutionTier.Interpreter || !HostSupported) return null;
        CodeArena? arena = CodeArena.Create((nuint)arenaBytes);
        return arena == null ? null : new BlockTranslator(core, arena, tier == ExecutionTier.LockStep);
    }

    /// <summary>Each translated run is checked against the interpreter.</summary>
    public bool LockStep { get; }

    /// <summary>Runs of a block before it is translated (1 = at first sight).</summary>
    public int Threshold = DefaultHotThreshold;

    /// <summary>Blocks translated so far.</summary>
    public long BlocksTranslated;

    /// <summary>Blocks translated with guest registers kept in host registers across the block.</summary>
    public long BlocksWithCachedRegisters => _compiler.BlocksWithCachedRegisters;

    /// <summary>Translated block runs (whole or partial).</summary>
    public long NativeRuns;

    /// <summary>Guest instructions retired by translated code.</summary>
    public long NativeInstructions;

    /// <summary>Lock-step: runs compared.</summary>
    public long LockStepChecks;

    /// <summary>Lock-step: runs that differed.</summary>
    public long LockStepMismatches;

    /// <summary>Lock-step: the first difference, or null.</summary>
    public string? FirstMismatch;

    /// <summary>Lock-step scratch: the state before the run, after the translated code, after the interpreter.</summary>
    internal readonly CpuState* Before, AfterNative, AfterInterpreter;

    /// <summary>Lock-step: reused text of the differences found by one comparison.</summary>
    internal readonly System.Text.StringBuilder Differences = new();

    /// <summary>Lock-step store log.</summary>
    internal WriteLog* Log => _log;

    /// <summary>
    /// Prepares <paramref name="b"/> for a run of at most <paramref name="budget"/> instructions: its translated code when it
    /// is hot and usable within the budget, else 0 (run it interpreted). <paramref name="segBase"/> is the core's
    /// effective segment bases (ES CS SS DS FS GS).
    /// </summary>
    public nint Lookup(Block b, int budget, int stackSize, ulong* segBase)
    {
        if (b.NativeCode == 0)
        {
            if (b.NativeCovered < 0 || ++b.HotCount < Threshold) return 0;
            Translate(b, stackSize, Flat(segBase));
            if (b.NativeCode == 0) return 0;
        }
        // The code was generated for one stack size, and maybe for flat segments; SS (or any segment) can change under
        // the same block.
        if (b.NativeStackSize != stackSize || (b.NativeFlat && !Flat(segBase))) return 0;
        int covered = b.NativeCovered;
        // The interpreter continues after a partial run, so the covered part must end strictly inside the budget,
        // or be the whole block within it.
        if (covered < budget || (covered == b.Count && covered <= budget)) return b.NativeCode;
        return 0;
    }

    /// <summary>Marks <paramref name="b"/> as never to be translated again (a lock-step mismatch).</summary>
    public static void Disable(Block b)
    {
        b.NativeCode = 0;
        b.NativeEntry = 0;
        b.NativeCovered = -1;
    }

    /// <summary>ES, CS, SS and DS bases all 0 (the flat model).</summary>
    private static bool Flat(ulong* segBase) => (segBase[0] | segBase[1] | segBase[2] | segBase[3]) == 0;

    private void Translate(Block b, int stackSize, bool flat)
    {
        if (_compiler.SlotsUsed > SlotCapacity - BlockCompiler.SlotsPerBlock) DropAll();
        byte[]? code = _compiler.Compile(b, stackSize, flat, out int covered, out int entry);
        if (code == null)
        {
            b.NativeCovered = -1;
            return;
        }
        byte* at = _arena.Add(code);
        if (at == null)
        {
            // Full: drop every translation (blocks invalidated since still hold code here) and start over. The code is
            // compiled again: the chain slots it names were handed out before the drop and will be handed out anew.
            DropAll();
            code = _compiler.Compile(b, stackSize, flat, out covered, out entry);
            at = code == null ? null : _arena.Add(code);
            if (at == null)
            {
                b.NativeCovered = -1;
                return;
            }
        }
        b.NativeCode = (nint)at;
        b.NativeEntry = (nint)at + entry;
        b.NativeCovered = covered;
        b.NativeStackSize = stackSize;
        b.NativeFlat = flat && b.Bitness == 32;
        _translated.Add(b);
        BlocksTranslated++;
    }

    /// <summary>Drops every translation and link (the arena or the chain slots are full) and starts over.</summary>
    private void DropAll()
    {
        foreach (Block old in _translated)
        {
            old.NativeCode = 0;
            old.NativeEntry = 0;
            old.NativeCovered = 0;
            old.HotCount = 0;
        }
        _translated.Clear();
        _arena.Reset();
        AddMaterializeStub();
        _compiler.SlotsUsed = 0;
        Unchain();
    }

    private void AddMaterializeStub()
    {
        // Placed first in the arena, so its address never changes across resets.
        nint at = (nint)_arena.Add(BlockCompiler.EmitMaterializeStub());
        System.Diagnostics.Debug.Assert(_materialize == 0 || at == _materialize);
        _materialize = at;
    }

    private bool _disposed;

    /// <inheritdoc/>
    public void Dispose()
    {
        FreeNative();
        GC.SuppressFinalize(this);
    }

    ~BlockTranslator() => FreeNative();

    private void FreeNative()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (Block b in _translated)
        {
            b.NativeCode = 0;
            b.NativeEntry = 0;
            b.NativeCovered = 0;
        }
        _translated.Clear();
        _arena.Dispose();
        if (LockStep)
        {
            NativeMemory.Free(_log);
            NativeMemory.AlignedFree(Before);
            NativeMemory.AlignedFree(AfterNative);
            NativeMemory.AlignedFree(AfterInterpreter);
        }
        else
        {
            NativeMemory.Free((void*)_chain->JumpCache);
            NativeMemory.Free(_chain);
            NativeMemory.Free(_slots);
        }
    }
}
