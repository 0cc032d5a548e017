using System.Runtime.CompilerServices;
using System.Text;
using VmmKit.Vmx.Emulator.Translator;

namespace VmmKit.Vmx.Emulator.Engine;

/// <summary>The dispatch loop's entry into the translating tier (src/Translator/).</summary>
internal sealed unsafe partial class Core
{
    /// <summary>The translating tier, or null when only the interpreter runs.</summary>
    internal BlockTranslator? Translator;

    /// <summary>The tier asked for (the translator may be absent anyway: a host that is not x86-64).</summary>
    internal ExecutionTier Tier = BlockTranslator.DefaultTier;

    /// <summary>Set until the translator of <see cref="BlockTranslator.DefaultTier"/> is created (on first use).</summary>
    private bool _tierPending = BlockTranslator.DefaultTier != ExecutionTier.Interpreter;

    /// <summary>The translator of the current tier, kept after the core is disposed so its counters can still be read.</summary>
    internal BlockTranslator? LastTranslator;

    /// <summary>Runs of a block before it is translated, for translators this core creates.</summary>
    internal int HotThreshold = BlockTranslator.DefaultHotThreshold;

    /// <summary>Switches the execution tier (drops every translation).</summary>
    internal void SetTier(ExecutionTier tier, int arenaBytes = BlockTranslator.ArenaBytes)
    {
        _tierPending = false;
        _pendingExit = 0;
        Tier = tier;
        Translator?.Dispose();
        Translator = BlockTranslator.Create(this, tier, arenaBytes);
        if (Translator != null) Translator.Threshold = HotThreshold;
        LastTranslator = Translator;
    }

    /// <summary>
    /// The exit (<see cref="ChainContext.PendingExit"/>) the last translated run returned through, to be linked to the
    /// block the dispatch loop finds next; 0 when there is none or something else ran since.
    /// </summary>
    private ulong _pendingExit;

    /// <summary>The link generation <see cref="_pendingExit"/> was seen in (a later one makes it stale).</summary>
    private ulong _pendingGeneration;

    /// <summary>
    /// Called by <see cref="Execute"/> before interpreting block <paramref name="b"/> with at most <paramref name="budget"/>
    /// instructions: runs its translated code when there is some. Returns -1 when the whole block ran (instructions
    /// retired counted, RIP set), otherwise the index of the instruction the interpreter continues with (nothing of
    /// that block counted yet) in the block <paramref name="first"/> / <paramref name="count"/>: <paramref name="b"/>'s,
    /// or those of a later block the translated code chained to (whose runs are counted).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal int RunTranslated(Block b, int budget, ref Instr* first, ref int count)
    {
        if (_tierPending) SetTier(Tier);
        BlockTranslator? t = Translator;
        ulong exit = _pendingExit;
        _pendingExit = 0;
        if (t == null) return 0;
        nint code = t.Lookup(b, budget, StackSize, SegBase);
        if (code == 0) return 0;
        if (t.LockStep) return RunLockStep(b, t, code);
        ChainContext* chain = t.Chain;
        if (exit != 0 && _pendingGeneration == chain->Generation) t.Link(exit, b, S.Rip, StackSize, SegBase[1]);
        ulong before = S.InstructionsRetired;
        // The remaining budget, at most MaxInstructionsPerCall (so a host kick is seen soon): a block that loops to itself
        // or chains to others goes on inside the translated code.
        long allowed = Math.Min((long)(BudgetEnd - before), BlockCompiler.MaxInstructionsPerCall);
        int k = ((delegate* unmanaged[SuppressGCTransition]<CpuState*, long, int>)code)(State, allowed);
        t.NativeRuns++;
        t.NativeInstructions += (long)(S.InstructionsRetired - before) + k;
        var last = (Instr*)chain->ExitFirst;
        int lastCount = (int)chain->ExitCount;
        if (k == lastCount)
        {
            S.InstructionsRetired += (ulong)k;
            _pendingExit = chain->PendingExit;
            _pendingGeneration = chain->Generation;
            chain->PendingExit = 0;
            return -1;
        }
        first = last;
        count = lastCount;
        return k;
    }

    /// <summary>
    /// Lock-step: runs the translated code, undoes it, runs the same instructions in the interpreter and compares
    /// registers, flags and the memory the translated code wrote. The interpreter's result is kept.
    /// </summary>
    private int RunLockStep(Block b, BlockTranslator t, nint code)
    {
        ref CpuState s = ref S;
        *t.Before = s;
        WriteLog* log = t.Log;
        log->Count = 0;
        // Budget = one run of the block: a loop does not go round inside the translated code.
        int k = ((delegate* unmanaged[SuppressGCTransition]<CpuState*, long, int>)code)(State, b.Count);
        t.NativeRuns++;
        t.NativeInstructions += k;
        t.LockStepChecks++;
        *t.AfterNative = s;
        int stores = (int)log->Count;
        Span<ulong> written = stackalloc ulong[WriteLog.Capacity];
        for (int e = 0; e < stores; e++)
        {
            WriteLogEntry* w = WriteLog.Entry(log, e);
            written[e] = ReadHost(w->Host, (int)w->Size);
        }
        for (int e = stores - 1; e >= 0; e--)
        {
            WriteLogEntry* w = WriteLog.Entry(log, e);
            WriteHost(w->Host, (int)w->Size, w->Old);
        }
        s = *t.Before;

        // The same instructions in the interpreter, exactly as Execute would run them.
        Instr* first = b.First;
        _blockFirst = first;
        bool whole = k == b.Count;
        bool jumped = false;
        for (int j = 0; j < k; j++)
        {
            Instr* p = first + j;
            int r = p->Handler(this, p);
            if (r == ExecStatus.Continue && StopBlock == 0) continue;
            if (r == ExecStatus.Jump && j == k - 1 && whole)
            {
                jumped = true;
                break;
            }
            string what = r == ExecStatus.Continue ? "ended the block (wrote code)" : r == ExecStatus.Jump ? "branched" : "stopped (event)";
            Mismatch(t, b, $"the interpreter {what} at instruction {j} ({(Iced.Intel.Code)p->Code}), the translated code ran {k} of {b.Count}");
            if (r == ExecStatus.Continue)
            {
                s.Rip = p->NextIp;
                s.InstructionsRetired += (ulong)(j + 1);
                StopBlock = 0;
                return -1;
            }
            if (r == ExecStatus.Jump)
            {
                s.InstructionsRetired += (ulong)(j + 1);
                StopBlock = 0;
                return -1;
            }
            return j; // Execute runs instruction j again and reports its event
        }
        if (whole && !jumped)
        {
            s.Rip = first[k - 1].NextIp; // a block that ends without a branch: Execute sets RIP past its last instruction
        }
        Compare(t, b, k, stores, written);
        if (whole)
        {
            s.InstructionsRetired += (ulong)k;
            return -1;
        }
        return k;
    }

    private void Compare(BlockTranslator t, Block b, int k, int stores, ReadOnlySpan<ulong> written)
    {
        *t.AfterInterpreter = S;
        LazyFlags.Materialize(ref *t.AfterInterpreter);
        LazyFlags.Materialize(ref *t.AfterNative);
        CpuState* x = t.AfterNative, y = t.AfterInterpreter;
        StringBuilder diff = t.Differences.Clear();
        for (int r = 0; r < 16; r++)
        {
            if (x->Gpr[r] != y->Gpr[r]) diff.Append($" GPR{r}: translated {x->Gpr[r]:X} interpreter {y->Gpr[r]:X};");
        }
        if (x->Rip != y->Rip) diff.Append($" RIP: translated {x->Rip:X} interpreter {y->Rip:X};");
        if (x->Rflags != y->Rflags) diff.Append($" RFLAGS: translated {x->Rflags:X} interpreter {y->Rflags:X};");
        int rest = sizeof(CpuState) - StateLayout.AfterLazy;
        if (!new ReadOnlySpan<byte>((byte*)x + StateLayout.AfterLazy, rest).SequenceEqual(new ReadOnlySpan<byte>((byte*)y + StateLayout.AfterLazy, rest)))
        {
            diff.Append(" other state differs;");
        }
        for (int e = 0; e < stores; e++)
        {
            WriteLogEntry* w = WriteLog.Entry(t.Log, e);
            ulong now = ReadHost(w->Host, (int)w->Size);
            if (now != written[e]) diff.Append($" store {e} ({w->Size} bytes): translated {written[e]:X} interpreter {now:X};");
        }
        if (diff.Length != 0)
        {
            Mismatch(t, b, $"after {k} of {b.Count} instructions:{diff}");
        }
    }

    private static void Mismatch(BlockTranslator t, Block b, string what)
    {
        t.LockStepMismatches++;
        if (t.FirstMismatch == null)
        {
            var text = new StringBuilder($"block at {b.LinearIp:X} [");
            for (int j = 0; j < b.Count; j++) text.Append(j == 0 ? "" : "; ").Append((Iced.Intel.Code)b.First[j].Code);
            t.FirstMismatch = text.Append("]: ").Append(what).ToString();
        }
        if (BlockTranslator.FailOnMismatch) throw new InvalidOperationException("lock-step mismatch: " + t.FirstMismatch);
        BlockTranslator.Disable(b);
    }

    private static ulong ReadHost(ulong host, int size) => size switch
    {
        1 => *(byte*)host,
        2 => *(ushort*)host,
        4 => *(uint*)host,
        _ => *(ulong*)host,
    };

    private static void WriteHost(ulong host, int size, ulong value)
    {
        switch (size)
        {
            case 1: *(byte*)host = (byte)value; break;
            case 2: *(ushort*)host = (ushort)value; break;
            case 4: *(uint*)host = (uint)value; break;
            default: *(ulong*)host = value; break;
        }
    }
}
