using System.Runtime.CompilerServices;

namespace VmmKit.Vmx.Emulator.Engine;

/// <summary>Block cache, self-modifying-code tracking and the dispatch loop.</summary>
internal sealed unsafe partial class Core
{
    private const int FastLookupSize = 4096;

    /// <summary>Decoded blocks kept before the cache is dropped wholesale (bounds host memory a guest can consume).</summary>
    private const int MaxCachedBlocks = 1 << 18;

    private Dictionary<ulong, Block> _blocks = null!;
    private Dictionary<ulong, List<Block>> _codeFrames = null!;
    private Block?[] _fastLookup = null!;
    private BlockDecoder _decoder = null!;
    private uint _epoch;

    /// <summary>
    /// Value of <see cref="CpuState.InstructionsRetired"/> at which the current <see cref="Execute"/> stops: a REP string
    /// instruction stops between iterations there (each iteration counts as one retired instruction).
    /// </summary>
    public ulong BudgetEnd;

    private void InitBlockCache()
    {
        _blocks = new Dictionary<ulong, Block>();
        _codeFrames = new Dictionary<ulong, List<Block>>();
        _fastLookup = new Block?[FastLookupSize];
        _decoder = new BlockDecoder(this);
    }

    /// <summary>Number of cached blocks (diagnostics).</summary>
    public int CachedBlockCount => _blocks.Count;

    private void FlushFastBlockLookup()
    {
        if (_fastLookup != null) Array.Clear(_fastLookup);
        Translator?.Unchain(); // links between translated blocks stand for this lookup: cut them with it
    }

    /// <summary>Whether guest-physical page <paramref name="physPage"/> holds decoded code.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool IsCodeFrame(ulong physPage) => _codeFrames.Count != 0 && _codeFrames.ContainsKey(physPage);

    /// <summary>Drops every block that has bytes in guest-physical page <paramref name="physPage"/>.</summary>
    public void InvalidateCodeFrame(ulong physPage)
    {
        if (!_codeFrames.Remove(physPage, out List<Block>? list)) return;
        foreach (Block b in list)
        {
            if (!b.Valid) continue;
            b.Valid = false;
            _blocks.Remove(Block.Key(b.PhysicalIp, b.Bitness));
        }
        FlushFastBlockLookup();
    }

    /// <summary>Drops all decoded code and the TLB (EPT or paging structures changed).</summary>
    public void FlushAll()
    {
        foreach (Block b in _blocks.Values) b.Valid = false;
        _blocks.Clear();
        _codeFrames.Clear();
        FlushFastBlockLookup();
        SoftTlb.Flush(Tlb);
    }

    /// <summary>Flushes the software TLB only (guest paging change).</summary>
    public void FlushTlb()
    {
        SoftTlb.Flush(Tlb);
        FlushFastBlockLookup();
    }

    /// <summary>Registers a freshly decoded block (cold path).</summary>
    internal void AddBlock(Block b)
    {
        if (_blocks.Count >= MaxCachedBlocks)
        {
            FlushAll();
        }
        _blocks[Block.Key(b.PhysicalIp, b.Bitness)] = b;
        AddFrame(b.PhysicalIp & ~0xFFFUL, b);
        if (b.LastPhysicalPage != (b.PhysicalIp & ~0xFFFUL)) AddFrame(b.LastPhysicalPage, b);
    }

    private void AddFrame(ulong page, Block b)
    {
        if (!_codeFrames.TryGetValue(page, out List<Block>? list))
        {
            list = new List<Block>();
            _codeFrames[page] = list;
            // Writes to this frame must take the slow path from now on.
            SoftTlb.DropWrites(Tlb, page);
        }
        list.Add(b);
    }

    private Block? FindBlock()
    {
        ref CpuState s = ref S;
        ulong rip = s.Rip;
        ulong lin = (SegBase[1] + rip) & LinearMask;
        Block? b = _fastLookup[(int)(lin ^ (lin >> 12)) & (FastLookupSize - 1)];
        if (b != null && b.Valid && b.LinearIp == lin && b.Bitness == Bitness && b.Epoch == _epoch)
        {
            return b;
        }
        return FindBlockSlow(lin);
    }

    private Block? FindBlockSlow(ulong lin)
    {
        byte* host = HostPointer(lin, MemoryAccess.Execute);
        if (host == null) return null;
        ulong phys = (Tlb + ((lin >> 12) & (SoftTlb.Entries - 1)))->PhysicalPage | (lin & 0xFFF);
        if (_blocks.TryGetValue(Block.Key(phys, Bitness), out Block? b) && b.Valid && b.LinearIp == lin)
        {
            if (b.Epoch != _epoch && !StillMatches(b, lin))
            {
                InvalidateCodeFrame(b.PhysicalIp & ~0xFFFUL);
                InvalidateCodeFrame(b.LastPhysicalPage);
                b = null;
            }
        }
        else
        {
            b = null;
        }
        if (b == null)
        {
            b = _decoder.Decode(lin, phys, host, Bitness, _epoch);
            if (b == null) return null;
            AddBlock(b);
        }
        b.Epoch = _epoch;
        _fastLookup[(int)(lin ^ (lin >> 12)) & (FastLookupSize - 1)] = b;
        return b;
    }

    private bool StillMatches(Block b, ulong lin)
    {
        // Memory may have been written by someone other than this processor (the hypervisor, a
        // device model, a grant copy) since the last run: compare the saved bytes, page by page.
        int done = 0;
        while (done < b.Bytes.Length)
        {
            ulong at = (lin + (ulong)done) & LinearMask;
            byte* p = HostPointer(at, MemoryAccess.Execute);
            if (p == null) return false;
            int n = Math.Min(b.Bytes.Length - done, 4096 - (int)(at & 0xFFF));
            if (!new ReadOnlySpan<byte>(p, n).SequenceEqual(b.Bytes.AsSpan(done, n))) return false;
            done += n;
        }
        return true;
    }

    /// <summary>
    /// Starts a new run epoch: every block is re-checked against memory before its next use. The fast lookup needs no
    /// clearing for that (it only hits a block of the current epoch); when the counter wraps, everything goes. Links
    /// between translated blocks skip that re-check, so they are cut (one increment).
    /// </summary>
    public void BeginRun()
    {
        if (++_epoch == 0) FlushAll();
        Translator?.Unchain();
    }

    /// <summary>
    /// Executes at most <paramref name="budget"/> instructions. Returns true when the budget ran out
    /// with no event, false when an event is pending in <see cref="Event"/> (RIP then points at the
    /// faulting / exiting instruction).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public bool Execute(ulong budget)
    {
        ref CpuState s = ref S;
        ulong end = s.InstructionsRetired + budget;
        BudgetEnd = end;
        _pendingExit = 0;
        if (PendingDebugExceptions != 0 && TakePendingDebugException()) return false;
        while (s.InstructionsRetired < end)
        {
            if (ExitRequestPending && TakeExitRequest())
            {
                // A host kick (EmulatedProcessor.RequestExit) ends the run like an external interrupt would.
                Event = default;
                Event.Kind = EventKind.VmExit;
                Event.ExitReason = BasicExitReason.ExternalInterrupt;
                return false;
            }
            if (DebugArmed(ref s))
            {
                // Single-step or breakpoints: one instruction at a time (Core.Debug.cs).
                _pendingExit = 0;
                int d = ExecuteDebug(end);
                BudgetEnd = end;
                if (d == 1) return true;
                if (d == 2) return false;
                continue;
            }
            Block? b = FindBlock();
            if (b == null) return false;
            ulong left = end - s.InstructionsRetired;
            int n = (ulong)b.Count < left ? b.Count : (int)left;
            Instr* first = b.First;
            int count = b.Count;
            _blockFirst = first;
            // src/Translator: -1 = the whole block (and any it chained to) ran translated; otherwise continue at
            // instruction `translated` of the block first/count (b's, or one it chained to).
            int translated = RunTranslated(b, n, ref first, ref count);
            if (translated < 0) continue;
            if (first != b.First)
            {
                left = end - s.InstructionsRetired;
                n = (ulong)count < left ? count : (int)left;
                _blockFirst = first;
            }
            Instr* last = first + n;
            Instr* p = first + translated;
            while (true)
            {
                int r = p->Handler(this, p);
                if (r == ExecStatus.Continue)
                {
                    p++;
                    if (p == last || StopBlock != 0)
                    {
                        s.Rip = p[-1].Ip + p[-1].Length;
                        s.InstructionsRetired += (ulong)(p - first);
                        break;
                    }
                    continue;
                }
                if (r == ExecStatus.Jump)
                {
                    s.InstructionsRetired += (ulong)(p - first + 1);
                    break;
                }
                s.InstructionsRetired += (ulong)(p - first);
                s.Rip = p->Ip;
                if (r == ExecStatus.Event)
                {
                    StopBlock = 0;
                    return false;
                }
                break; // Restart
            }
            StopBlock = 0;
        }
        return true;
    }
}
