using Iced.Intel;
using VmmKit.Vmx.Emulator.Engine;
using static Iced.Intel.AssemblerRegisters;
using static VmmKit.Vmx.Emulator.Translator.HostAsm;

namespace VmmKit.Vmx.Emulator.Translator;

/// <summary>
/// Translates the leading run of supported instructions of a 64-bit <see cref="Block"/> to host x86-64 code.
/// </summary>
/// <remarks>
/// The generated function is <c>int F(CpuState*, long budget)</c> (System V or Windows x64 convention) and returns how
/// many of the block's instructions it retired in its last run of the block; it returns the block's
/// <see cref="Block.Count"/> only when it ran the whole block and set RIP. A block that branches back to its own start
/// runs again inside the call while the budget allows; the earlier runs, like whole runs of chained blocks, are taken off
/// the budget in R15 and added to InstructionsRetired once, at the exit. Guest registers live in <see cref="CpuState"/>
/// (RBX points at it), except those a block keeps in host registers from its entry to each exit (<see cref="GprCache"/>):
/// the two it uses most in RBP and R13, more in the scratch registers its code never touches (<see cref="FreeScratch"/>).
/// Every exit — the end of the block, a chained jump, a TLB miss or any other side exit —
/// writes them back first, so the state is complete wherever the code leaves. Memory operands probe the
/// software TLB inline exactly as <see cref="Core.Read"/>/<see cref="Core.Write"/> do; a miss, a page-crossing access
/// or a write to a frame without a write tag (code frames never have one) leaves at that instruction, before it changed
/// anything, and the interpreter runs it (filling the TLB, raising the fault, invalidating code). Flags are left in
/// the interpreter's form: the same lazy (op, size, result, sources) for ADD/SUB/CMP/logic/INC/DEC, eager RFLAGS
/// bits with the interpreter's choice for SDM-undefined bits for shifts and IMUL; a record only a side exit could see
/// is rebuilt by that exit's stub instead of stored (BlockCompiler.DeferredFlags.cs).
/// Register use: RBX state, R12 TLB, RBP and R13 cached guest registers, R14 the lock-step write log (lock-step) or the
/// <see cref="ChainContext"/> (otherwise), R15 the budget left; RAX RCX RDX RSI
/// scratch; RDI R8-R11 scratch or, in a block whose code does not use them, cached guest registers.
/// Block chaining (outside lock-step): every translated block has the same prologue and epilogue, so a block's exit
/// may jump straight to the next block's code after its prologue (<c>entryOffset</c> of <see cref="Compile"/>), when
/// the link is current (<see cref="ChainContext"/>) and the budget left covers any whole block (the dispatch loop passes
/// at most <see cref="MaxInstructionsPerCall"/>, so it still sees a host kick soon). Those are the checks the dispatch loop (Core.Execute) makes between blocks that translated code can
/// change; the others (a pending debug trap, a write to code, mode, SS or paging changes) need an interpreted
/// instruction, which always returns to the dispatch loop first.
/// </remarks>
internal sealed unsafe partial class BlockCompiler
{
    private const int R12n = 12, R13n = 13, R14n = 14;
    /// <summary>RFLAGS bits CF PF AF ZF SF OF.</summary>
    private const int Arith = 0x8D5;

    private enum FlagState { Unknown, Lazy, Eager }

    private readonly nint _tlb, _segBase;
    private readonly nint _log;
    private readonly nint _materialize;
    private readonly nint _chain;
    private readonly ChainSlot* _slots;
    private readonly int _slotCapacity;

    /// <summary>Blocks compiled with guest registers kept in host registers (GprCache).</summary>
    public long BlocksWithCachedRegisters;

    /// <summary>Chain slots handed out since the last reset (the translator resets it when it drops every translation).</summary>
    public int SlotsUsed;

    /// <summary>Slots one block may need (a conditional branch: taken and not taken).</summary>
    public const int SlotsPerBlock = 2;
    private Instr* _first;
    private int _stackSize;

    private HostAsm _h = null!;
    private Assembler A => _h.A;
    private Label _exit;
    private Label[] _miss = null!;
    private List<int> _missUsed = null!;
    private FlagState _flags;
    private LazyFlagOp _lazyOp;
    private int _lazySize;
    private bool _hostValid, _hostCfValid;
    /// <summary>The instruction being emitted writes flags nobody reads (<see cref="FlagsDead"/>): they are not stored.</summary>
    private bool _deadFlags;
    /// <summary>LazyOp | LazySize &lt;&lt; 32 known to be in CpuState at this point of the code, or -1.</summary>
    private long _storedOp;
    private int _count;
    private Label _head, _body;
    private ulong _startIp;
    private bool _coversWholeBlock;
    /// <summary>Leading instructions of the block this compilation translates.</summary>
    private int _covered;

    /// <summary>
    /// The most instructions one call of translated code may retire, loop rounds and chained blocks included: the
    /// dispatch loop passes at most this budget, so it sees a host kick (Core.RequestExit) within that many
    /// instructions, and translated code needs no count of its own (one budget check per link or loop round).
    /// </summary>
    public const long MaxInstructionsPerCall = 1 << 16;
    private int _bitness;
    /// <summary>
    /// 32-bit code compiled for ES, CS, SS and DS bases of 0 (the flat model every gcc-built guest uses): no base is
    /// added for those segments and no CS check is made before a link. <see cref="BlockTranslator.Lookup"/> runs such
    /// code only while the bases are 0, and links join only blocks compiled alike (a segment load is always
    /// interpreted, so the bases cannot change inside a translated run).
    /// </summary>
    private bool _flat;

    /// <summary>Per chain slot: whether the block owning it was compiled <see cref="_flat"/> (links join only alike blocks).</summary>
    public readonly bool[] SlotFlat;
    /// <summary>Stack address and push size in bytes (8 in 64-bit mode, 4 for a 32-bit stack; 0: stack instructions stay interpreted).</summary>
    private int _stack;

    /// <param name="tlb">The core's software TLB.</param>
    /// <param name="segBase">The core's effective segment bases.</param>
    /// <param name="log">Lock-step write log (null: stores are not logged).</param>
    /// <param name="materialize">Address of the shared <see cref="EmitMaterializeStub"/> code.</param>
    /// <param name="chain">Chaining state (null: no chaining, as in lock-step, where <paramref name="log"/> is set).</param>
    /// <param name="slots">Chain slots for direct-branch exits.</param>
    /// <param name="slotCapacity">Number of <paramref name="slots"/>.</param>
    public BlockCompiler(TlbEntry* tlb, ulong* segBase, WriteLog* log, nint materialize, ChainContext* chain, ChainSlot* slots, int slotCapacity)
    {
        _tlb = (nint)tlb;
        _segBase = (nint)segBase;
        _log = (nint)log;
        _materialize = materialize;
        _chain = log == null ? (nint)chain : 0;
        _slots = slots;
        _slotCapacity = slotCapacity;
        SlotFlat = new bool[slotCapacity];
    }

    /// <summary>
    /// Shared subroutine (called with RBX = state): makes the pending lazy flags concrete in RFLAGS, as
    /// <see cref="LazyFlags.Materialize"/> does, by redoing the recorded operation on the host. Clobbers RAX RCX RDX R8-R10.
    /// </summary>
    public static byte[] EmitMaterializeStub()
    {
        var h = new HostAsm();
        Assembler a = h.A;
        Label done = a.CreateLabel(), merge = a.CreateLabel();
        a.mov(eax, __dword_ptr[rbx + StateLayout.LazyOp]);
        a.test(eax, eax);
        a.jz(done);
        a.mov(ecx, __dword_ptr[rbx + StateLayout.LazySize]);
        a.mov(r8, __qword_ptr[rbx + StateLayout.LazySrc1]);
        a.mov(r9, __qword_ptr[rbx + StateLayout.LazySrc2]);
        a.mov(r10, __qword_ptr[rbx + StateLayout.LazyResult]);
        foreach (LazyFlagOp op in new[] { LazyFlagOp.Add, LazyFlagOp.Sub, LazyFlagOp.Logic, LazyFlagOp.Inc, LazyFlagOp.Dec })
        {
            Label nextOp = a.CreateLabel();
            a.cmp(eax, (int)op);
            a.jne(nextOp);
            foreach (int size in new[] { 1, 2, 4, 8 })
            {
                Label nextSize = a.CreateLabel();
                if (size != 8)
                {
                    a.cmp(ecx, size);
                    a.jne(nextSize);
                }
                switch (op)
                {
                    case LazyFlagOp.Add: h.Alu(Op.Add, size, R8n, R9n); break;
                    case LazyFlagOp.Sub: h.Alu(Op.Cmp, size, R8n, R9n); break;
                    case LazyFlagOp.Logic: h.Alu(Op.Test, size, R10n, R10n); break;
                    default:
                        a.bt(__qword_ptr[rbx + StateLayout.Rflags], (sbyte)0); // INC/DEC keep CF
                        h.IncDec(op == LazyFlagOp.Inc, size, R8n);
                        break;
                }
                a.pushfq();
                a.pop(rdx);
                a.and(edx, op == LazyFlagOp.Logic ? 0xC4 : Arith); // logic: CF = OF = AF = 0
                a.jmp(merge);
                if (size != 8) a.Label(ref nextSize);
            }
            a.Label(ref nextOp);
        }
        a.jmp(done);
        a.Label(ref merge);
        a.mov(rcx, __qword_ptr[rbx + StateLayout.Rflags]);
        a.and(rcx, ~Arith);
        a.or(rcx, rdx);
        a.mov(__qword_ptr[rbx + StateLayout.Rflags], rcx);
        a.mov(__dword_ptr[rbx + StateLayout.LazyOp], 0);
        a.Label(ref done);
        a.ret();
        return h.Assemble();
    }

    /// <summary>
    /// Compiles <paramref name="b"/> (64-bit or 32-bit code) for a stack of <paramref name="stackSize"/> bytes; null when
    /// its first instruction is not supported. <paramref name="covered"/> is the number of leading instructions the code
    /// handles (the rest of the block stays interpreted); <paramref name="entryOffset"/> is where chained blocks enter
    /// (after the prologue). <paramref name="flat"/>: 32-bit code may assume ES, CS, SS and DS bases of 0 (see
    /// <see cref="_flat"/>).
    /// </summary>
    public byte[]? Compile(Block b, int stackSize, bool flat, out int covered, out int entryOffset)
    {
        int slots = SlotsUsed;
        _extraHosts = 0;
        byte[]? code = CompileWith(b, stackSize, flat, cache: true, out covered, out entryOffset, out bool cacheFailed);
        if (cacheFailed)
        {
            SlotsUsed = slots; // GprCache could not rewrite some access: compile again with every register in CpuState
            return CountCached(CompileWith(b, stackSize, flat, cache: false, out covered, out entryOffset, out _));
        }
        if (code == null) return null;
        // Scratch registers this block's code never touches can hold more guest registers: compile again with them.
        int free = FreeScratch();
        if (free == 0 || !WantsMore(free)) return CountCached(code);
        int afterFirst = SlotsUsed;
        SlotsUsed = slots;
        _extraHosts = free;
        byte[]? wider = CompileWith(b, stackSize, flat, cache: true, out int wideCovered, out int wideEntry, out cacheFailed);
        if (!cacheFailed && wider != null)
        {
            covered = wideCovered;
            entryOffset = wideEntry;
            return CountCached(wider);
        }
        // Not rewritable with the wider set: the first compilation stands (same slots, same code).
        SlotsUsed = slots;
        _extraHosts = 0;
        code = CompileWith(b, stackSize, flat, cache: true, out covered, out entryOffset, out _);
        System.Diagnostics.Debug.Assert(SlotsUsed == afterFirst);
        return CountCached(code);
    }

    private byte[]? CountCached(byte[]? code)
    {
        if (code != null && HasCached) BlocksWithCachedRegisters++;
        return code;
    }

    private byte[]? CompileWith(Block b, int stackSize, bool flat, bool cache, out int covered, out int entryOffset, out bool cacheFailed)
    {
        cacheFailed = false;
        covered = 0;
        entryOffset = 0;
        _first = b.First;
        _stackSize = stackSize;
        if (b.Bitness is not (64 or 32)) return null;
        _bitness = b.Bitness;
        _flat = flat && b.Bitness == 32;
        _stack = b.Bitness == 64 ? 8 : stackSize == 4 ? 4 : 0;
        Instr* first = b.First;
        _count = b.Count;
        int n = 0;
        while (n < _count && Supported(first + n)) n++;
        if (n == 0) return null;

        _covered = n;
        ChooseCached(first, n, cache);
        _startIp = first->Ip;
        _coversWholeBlock = n == _count;
        _h = new HostAsm();
        _exit = A.CreateLabel();
        _miss = new Label[n];
        _missUsed = new List<int>();
        _flags = FlagState.Unknown;
        _hostValid = _hostCfValid = false;
        _storedOp = -1;
        Prologue();
        bool ended = false;
        _pending = null;
        _missRecord = new DeferredRecord?[n];
        for (int j = 0; j < n; j++)
        {
            _deadFlags = FlagsDead(first, j, n);
            _pendingAtStart = _pending;
            _deferredNow = false;
            ended = Emit(first + j, j);
            if (!_deferredNow && WritesAllFlags(first + j)) _pending = null; // overwritten: no exit after here needs it
        }
        System.Diagnostics.Debug.Assert(_pending == null, "a deferred record outlived its run");
        if (!ended)
        {
            if (n == _count)
            {
                ChainTo(first[n - 1].NextIp); // a block cut at a page end or at its size limit runs on into the next
            }
            else
            {
                A.mov(eax, n);
                A.jmp(_exit);
            }
        }
        foreach (int j in _missUsed)
        {
            A.Label(ref _miss[j]);
            if (_missRecord[j] is DeferredRecord record) EmitRecord(record);
            A.mov(eax, j);
            A.jmp(_exit);
        }
        A.Label(ref _exit);
        WriteBackCached();
        if (_chain != 0)
        {
            // Tell the dispatch loop which block the call ended in (it may have chained past the one it called).
            A.mov(rcx, (ulong)_first);
            A.mov(__qword_ptr[r14 + ChainContext.ExitFirstOffset], rcx);
            A.mov(__qword_ptr[r14 + ChainContext.ExitCountOffset], _count);
        }
        Epilogue();
        covered = n;
        byte[]? code = _h.Assemble(_head, out entryOffset, _cacheReg);
        cacheFailed = code == null;
        return code;
    }

    // ------------------------------------------------------------------ guest registers in host registers

    /// <summary>Host registers that hold guest registers across every block (RBP, R13), in the order they are handed out.</summary>
    private static readonly int[] CacheHosts = [5, 13];

    /// <summary>
    /// Scratch registers a block may also use for guest registers when its code never touches them (RDI R8 R9 R10 R11,
    /// as a bit mask by register number): found by compiling the block once and reading the registers its code uses.
    /// </summary>
    private static readonly int[] ScratchHosts = [7, 8, 9, 10, 11];

    /// <summary>The <see cref="ScratchHosts"/> this compilation may hand out (bit per register number).</summary>
    private int _extraHosts;

    /// <summary>
    /// The <see cref="ScratchHosts"/> the code just compiled never reads or writes (bit per register number). A call
    /// (the shared materialize stub) clobbers RAX RCX RDX R8-R10 without naming them, so a block that makes one keeps
    /// those out.
    /// </summary>
    private int FreeScratch()
    {
        int used = 0;
        var info = new InstructionInfoFactory();
        foreach (Instruction ins in A.Instructions)
        {
            if (ins.FlowControl == FlowControl.IndirectCall || ins.FlowControl == FlowControl.Call) used |= 0x700;
            foreach (UsedRegister u in info.GetInfo(ins).GetUsedRegisters())
            {
                Register full = u.Register.GetFullRegister();
                if (full >= Register.RAX && full <= Register.R15) used |= 1 << (full - Register.RAX);
            }
            foreach (UsedMemory m in info.GetInfo(ins).GetUsedMemory())
            {
                if (m.Base >= Register.RAX && m.Base <= Register.R15) used |= 1 << (m.Base - Register.RAX);
                if (m.Index >= Register.RAX && m.Index <= Register.R15) used |= 1 << (m.Index - Register.RAX);
            }
        }
        int free = 0;
        foreach (int r in ScratchHosts)
        {
            if ((used & (1 << r)) == 0) free |= 1 << r;
        }
        return free;
    }

    /// <summary>Whether the block has a guest register worth a host register beyond those already chosen.</summary>
    private bool WantsMore(int free)
    {
        int before = _extraHosts;
        _extraHosts = free;
        ChooseCached(_first, _covered, enabled: true);
        int count = 0;
        foreach (int h in _cacheHost)
        {
            if (h >= 0) count++;
        }
        _extraHosts = before;
        ChooseCached(_first, _covered, enabled: true); // as the code just compiled has it
        return count > CacheHosts.Length;
    }

    /// <summary>Per guest register slot: the host register holding it in this block (GprCache), or None.</summary>
    private readonly Register[] _cacheReg = new Register[16];

    /// <summary>Per guest register slot: the host register number holding it, or -1.</summary>
    private readonly int[] _cacheHost = new int[16];

    /// <summary>
    /// Picks the guest registers this block keeps in host registers: the most used ones (at least two uses among
    /// the first <paramref name="n"/> instructions; none when <paramref name="enabled"/> is false), never one whose
    /// high byte (AH..BH) the block names.
    /// </summary>
    private void ChooseCached(Instr* first, int n, bool enabled)
    {
        Array.Fill(_cacheReg, Register.None);
        Array.Fill(_cacheHost, -1);
        if (!enabled) return;
        Span<int> uses = stackalloc int[16];
        uses.Clear();
        Span<bool> high = stackalloc bool[4];
        high.Clear();
        for (int j = 0; j < n; j++)
        {
            Instr* i = first + j;
            Count(i->Op0, uses, high);
            Count(i->Op1, uses, high);
            Count(i->MemBase, uses, high);
            Count(i->MemIndex, uses, high);
            if (((Code)i->Code).Mnemonic() is Mnemonic.Push or Mnemonic.Pop or Mnemonic.Call or Mnemonic.Ret) uses[4] += 2;
        }
        for (int r = 0; r < 4; r++)
        {
            if (high[r]) uses[r] = 0;
        }
        foreach (int host in Hosts())
        {
            // RBP and R13 are saved and restored by every call: worth it from two uses. A free scratch register costs
            // nothing, and even one use gains in a block that loops on itself (loaded once, before the loop).
            int least = Array.IndexOf(CacheHosts, host) >= 0 ? 2 : 1;
            int best = -1;
            for (int s = 0; s < 16; s++)
            {
                if (_cacheHost[s] < 0 && uses[s] >= least && (best < 0 || uses[s] > uses[best])) best = s;
            }
            if (best < 0) return;
            _cacheHost[best] = host;
            _cacheReg[best] = Register.RAX + host;
        }

        IEnumerable<int> Hosts()
        {
            foreach (int h in CacheHosts) yield return h;
            foreach (int h in ScratchHosts)
            {
                if ((_extraHosts & (1 << h)) != 0) yield return h;
            }
        }

        static void Count(byte slot, Span<int> uses, Span<bool> high)
        {
            if (slot < 16) uses[slot]++;
            else if (slot < Instr.Gpr8High + 4) high[slot - Instr.Gpr8High] = true;
        }
    }

    /// <summary>Whether this block keeps any guest register in a host register.</summary>
    private bool HasCached => _cacheHost.AsSpan().IndexOfAnyExcept(-1) >= 0;

    /// <summary>Loads the cached guest registers from CpuState (at the block's entry).</summary>
    private void LoadCached()
    {
        for (int s = 0; s < 16; s++)
        {
            if (_cacheHost[s] >= 0) A.mov(Q(_cacheHost[s]), __qword_ptr[rbx + StateLayout.Gpr(s)]);
        }
    }

    /// <summary>Stores the cached guest registers to CpuState (at every exit; GprCache drops those the block never writes). Flags kept.</summary>
    private void WriteBackCached()
    {
        for (int s = 0; s < 16; s++)
        {
            if (_cacheHost[s] >= 0) A.mov(__qword_ptr[rbx + StateLayout.Gpr(s)], Q(_cacheHost[s]));
        }
    }

    // ------------------------------------------------------------------ flag liveness

    /// <summary>
    /// Whether the flags instruction <paramref name="j"/> writes are never read: a later instruction of the run writes
    /// every arithmetic flag before anything reads one and before any point where the translated code may leave (a
    /// memory or stack access, a division, a branch, the end of the run), so nobody can see them. Such an
    /// instruction leaves the flag state in CpuState as it was.
    /// </summary>
    private static bool FlagsDead(Instr* first, int j, int n)
    {
        for (int m = j + 1; m < n; m++)
        {
            Instr* i = first + m;
            FlagUse use = Use(i);
            if (use == FlagUse.None) continue;
            return use == FlagUse.WritesAll;
        }
        return false;
    }

    private enum FlagUse { None, WritesAll, Other }

    /// <summary>How a supported instruction relates to the guest flags and to leaving the translated code.</summary>
    private static FlagUse Use(Instr* i)
    {
        Code code = (Code)i->Code;
        Mnemonic m = code.Mnemonic();
        bool memory = m != Mnemonic.Lea && (i->Op0 == Instr.MemoryOperand || i->Op1 == Instr.MemoryOperand);
        if (memory) return FlagUse.Other;
        switch (m)
        {
            case Mnemonic.Add: case Mnemonic.Or: case Mnemonic.And: case Mnemonic.Sub: case Mnemonic.Xor:
            case Mnemonic.Cmp: case Mnemonic.Test: case Mnemonic.Mul:
                return FlagUse.WritesAll;
            case Mnemonic.Imul:
                return FlagUse.WritesAll;
            case Mnemonic.Shl: case Mnemonic.Sal: case Mnemonic.Shr: case Mnemonic.Sar:
                // A count in CL may be 0, which keeps the flags.
                return i->Op1 == Instr.NoRegister ? FlagUse.WritesAll : FlagUse.Other;
            case Mnemonic.Mov: case Mnemonic.Movzx: case Mnemonic.Movsx: case Mnemonic.Movsxd: case Mnemonic.Lea:
            case Mnemonic.Nop: case Mnemonic.Cdq: case Mnemonic.Cqo: case Mnemonic.Cwde: case Mnemonic.Cdqe:
                return FlagUse.None;
            default:
                // Branches, stack instructions, divisions, flag readers (Jcc SETcc CMOVcc ADC SBB, INC/DEC keep CF).
                return FlagUse.Other;
        }
    }

    // ------------------------------------------------------------------ what is supported

    private static bool IsGprOrImm(OpCodeOperandKind k) => k is OpCodeOperandKind.r8_or_mem or OpCodeOperandKind.r16_or_mem
        or OpCodeOperandKind.r32_or_mem or OpCodeOperandKind.r64_or_mem or OpCodeOperandKind.r8_reg or OpCodeOperandKind.r8_opcode
        or OpCodeOperandKind.r16_reg or OpCodeOperandKind.r16_opcode or OpCodeOperandKind.r32_reg or OpCodeOperandKind.r32_opcode
        or OpCodeOperandKind.r64_reg or OpCodeOperandKind.r64_opcode or OpCodeOperandKind.imm8 or OpCodeOperandKind.imm16
        or OpCodeOperandKind.imm32 or OpCodeOperandKind.imm64 or OpCodeOperandKind.imm8sex16 or OpCodeOperandKind.imm8sex32
        or OpCodeOperandKind.imm8sex64 or OpCodeOperandKind.imm32sex64 or OpCodeOperandKind.imm8_const_1 or OpCodeOperandKind.al
        or OpCodeOperandKind.ax or OpCodeOperandKind.eax or OpCodeOperandKind.rax or OpCodeOperandKind.cl or OpCodeOperandKind.mem
        or OpCodeOperandKind.br64_1 or OpCodeOperandKind.br64_4 or OpCodeOperandKind.br32_1 or OpCodeOperandKind.br32_4;

    private bool Supported(Instr* i)
    {
        Code code = (Code)i->Code;
        if (code == Code.INVALID || (i->Flags & InstrFlags.Lock) != 0) return false;
        if (IsStringMove(code)) return SupportedString(i); // BlockCompiler.Strings.cs
        OpCodeInfo info = code.ToOpCode();
        if (info.Encoding != EncodingKind.Legacy) return false;
        for (int k = 0; k < info.OpCount; k++)
        {
            if (!IsGprOrImm(info.GetOpKind(k))) return false;
        }
        if (i->Op0 == Instr.MemoryOperand || i->Op1 == Instr.MemoryOperand)
        {
            if (i->AddrSize < 4) return false;
        }
        int size = i->OpSize;
        int word = _bitness / 8; // near branch and stack operand size of this mode (no 66h forms)
        switch (code.Mnemonic())
        {
            case Mnemonic.Add: case Mnemonic.Or: case Mnemonic.And: case Mnemonic.Sub: case Mnemonic.Xor:
            case Mnemonic.Cmp: case Mnemonic.Test:
            case Mnemonic.Adc: case Mnemonic.Sbb:
            case Mnemonic.Inc: case Mnemonic.Dec:
            case Mnemonic.Mov:
                return size is 1 or 2 or 4 or 8;
            case Mnemonic.Movzx: case Mnemonic.Movsx:
                return size is 2 or 4 or 8;
            case Mnemonic.Movsxd:
                return size == 8;
            case Mnemonic.Lea:
                return size is 2 or 4 or 8;
            case Mnemonic.Shl: case Mnemonic.Sal: case Mnemonic.Shr: case Mnemonic.Sar:
                // Count 0 changes no flags: only CL counts handle it at run time; an immediate 0 stays interpreted.
                return size is 4 or 8 && (i->Op1 != Instr.NoRegister || (i->Imm & (size == 8 ? 0x3FUL : 0x1FUL)) != 0);
            case Mnemonic.Imul:
            case Mnemonic.Mul:
            case Mnemonic.Div: case Mnemonic.Idiv:
                return size is 4 or 8;
            case Mnemonic.Cdq: case Mnemonic.Cqo: case Mnemonic.Cwde: case Mnemonic.Cdqe:
                return true;
            case Mnemonic.Nop:
                return true;
            case Mnemonic.Push:
            case Mnemonic.Pop:
                return _stack == word && i->Sub == word && i->Op0 != Instr.MemoryOperand;
            case Mnemonic.Jmp:
                return code.IsJmpShortOrNear() || (code.IsJmpNearIndirect() && size == word);
            case Mnemonic.Call:
                return _stack == word && i->Sub == word && (code.IsCallNear() || (code.IsCallNearIndirect() && size == word));
            case Mnemonic.Ret:
                return _stack == word && i->Sub == word;
            default:
                if (IsSetcc(code)) return true;
                if (IsCmovcc(code)) return size is 2 or 4 or 8;
                return code.IsJccShortOrNear();
        }
    }

    private static bool IsSetcc(Code code) => code >= Code.Seto_rm8 && code <= Code.Setg_rm8;

    private static bool IsCmovcc(Code code) => code >= Code.Cmovo_r16_rm16 && code <= Code.Cmovg_r64_rm64;

    // ------------------------------------------------------------------ emission

    /// <summary>Emits instruction <paramref name="j"/>; true when it ends the block (a branch).</summary>
    private bool Emit(Instr* i, int j)
    {
        Code code = (Code)i->Code;
        if (IsStringMove(code)) { StringMove(i, j); return false; } // BlockCompiler.Strings.cs
        switch (code.Mnemonic())
        {
            case Mnemonic.Add: Alu(i, j, Op.Add); return false;
            case Mnemonic.Or: Alu(i, j, Op.Or); return false;
            case Mnemonic.And: Alu(i, j, Op.And); return false;
            case Mnemonic.Sub: Alu(i, j, Op.Sub); return false;
            case Mnemonic.Adc: AdcSbb(i, j, Op.Adc); return false;
            case Mnemonic.Sbb: AdcSbb(i, j, Op.Sbb); return false;
            case Mnemonic.Xor: Alu(i, j, Op.Xor); return false;
            case Mnemonic.Cmp: Alu(i, j, Op.Cmp); return false;
            case Mnemonic.Test: Alu(i, j, Op.Test); return false;
            case Mnemonic.Inc: IncDec(i, j, inc: true); return false;
            case Mnemonic.Dec: IncDec(i, j, inc: false); return false;
            case Mnemonic.Mov: Mov(i, j); return false;
            case Mnemonic.Movzx: Extend(i, j, signed: false); return false;
            case Mnemonic.Movsx: case Mnemonic.Movsxd: Extend(i, j, signed: true); return false;
            case Mnemonic.Lea: Lea(i); return false;
            case Mnemonic.Shl: case Mnemonic.Sal: Shift(i, j, Op.Shl); return false;
            case Mnemonic.Shr: Shift(i, j, Op.Shr); return false;
            case Mnemonic.Sar: Shift(i, j, Op.Sar); return false;
            case Mnemonic.Imul when ((Code)i->Code).ToOpCode().OpCount == 1: MulOne(i, j, signed: true); return false;
            case Mnemonic.Imul: Imul(i, j); return false;
            case Mnemonic.Mul: MulOne(i, j, signed: false); return false;
            case Mnemonic.Div: Divide(i, j, signed: false); return false;
            case Mnemonic.Cdq: case Mnemonic.Cqo: case Mnemonic.Cwde: case Mnemonic.Cdqe: SignExtendAccumulator(code.Mnemonic()); return false;
            case Mnemonic.Idiv: Divide(i, j, signed: true); return false;
            case Mnemonic.Nop: return false;
            case Mnemonic.Push: Push(i, j); return false;
            case Mnemonic.Pop: Pop(i, j); return false;
            case Mnemonic.Jmp: Jmp(i, j); return true;
            case Mnemonic.Call: Call(i, j); return true;
            case Mnemonic.Ret: Ret(i, j); return true;
            default:
                if (IsSetcc(code)) { Setcc(i, j); return false; }
                if (IsCmovcc(code)) { Cmovcc(i, j); return false; }
                Jcc(i);
                return true;
        }
    }

    /// <summary>Saves the callee-saved registers used (RSI/RDI only for the Windows convention), loads the fixed ones.</summary>
    private void Prologue()
    {
        bool windows = OperatingSystem.IsWindows();
        A.push(rbx); A.push(rbp); A.push(r12); A.push(r13); A.push(r14); A.push(r15);
        if (windows) { A.push(rsi); A.push(rdi); }
        A.mov(rbx, windows ? rcx : rdi);
        A.mov(r15, windows ? rdx : rsi);
        A.push(r15); // the budget at entry: the exit counts what the chained blocks and loop rounds retired (Epilogue)
        A.mov(r12, (ulong)_tlb);
        if (_log != 0) A.mov(r14, (ulong)_log);
        else if (_chain != 0) A.mov(r14, (ulong)_chain);
        _head = A.CreateLabel();
        A.Label(ref _head);
        // Chained blocks enter here, so each block loads its own cached registers; its loop goes round from _body.
        if (!HasCached)
        {
            _body = _head;
            return;
        }
        LoadCached();
        _body = A.CreateLabel();
        A.Label(ref _body);
    }

    private void Epilogue()
    {
        // Whole runs of chained blocks, loop rounds and completed strings took their instructions off R15 only;
        // InstructionsRetired gets them here, once per call (no memory add on every link).
        A.pop(rcx);
        A.sub(rcx, r15);
        A.add(__qword_ptr[rbx + StateLayout.InstructionsRetired], rcx);
        if (OperatingSystem.IsWindows()) { A.pop(rdi); A.pop(rsi); }
        A.pop(r15); A.pop(r14); A.pop(r13); A.pop(r12); A.pop(rbp); A.pop(rbx);
        A.ret();
    }

    /// <summary>
    /// Ends the block with a branch to <paramref name="target"/>. A branch back to the block's own first instruction
    /// (a loop) runs the block again inside the translated code while the budget (R15) still covers a whole run, at most
    /// the budget allows (at most <see cref="MaxInstructionsPerCall"/> instructions per call); each extra run is counted in
    /// InstructionsRetired here. Otherwise RIP = target and the block returns.
    /// </summary>
    private void BranchTo(ulong target)
    {
        if (target == _startIp && _coversWholeBlock)
        {
            Label leave = A.CreateLabel();
            A.sub(r15, _count);
            A.cmp(r15, _count);
            A.jl(leave);
            A.jmp(_body);
            A.Label(ref leave);
            A.add(r15, _count); // this last run is the one the return value counts
        }
        ChainTo(target);
    }

    /// <summary>Ends a whole block run with RIP = <paramref name="target"/> (a direct branch): follows the exit's chain slot when it may.</summary>
    private void ChainTo(ulong target)
    {
        // A loop back to the block's own start left its loop above (budget used up): return.
        if (_chain == 0 || !_coversWholeBlock || SlotsUsed >= _slotCapacity || target == _startIp)
        {
            SetRip(target);
            EndBlock();
            return;
        }
        SlotFlat[SlotsUsed] = _flat;
        ChainSlot* slot = _slots + SlotsUsed++;
        Label unlinked = A.CreateLabel();
        A.mov(rcx, (ulong)slot);
        ChainChecks(unlinked);
        A.mov(rax, __qword_ptr[rcx]);
        A.cmp(rax, __qword_ptr[r14 + ChainContext.GenerationOffset]);
        A.jne(unlinked);
        TakeLink();
        WriteBackCached();
        A.jmp(__qword_ptr[rcx + 8]);
        A.Label(ref unlinked);
        // RIP only on the way back to the dispatch loop: a linked block sets it where it ends, and an exit inside it
        // hands the interpreter an instruction (Core.Execute sets RIP from the instructions it runs, not reads it).
        SetRip(target);
        A.mov(__qword_ptr[r14 + ChainContext.PendingExitOffset], rcx);
        EndBlock();
    }

    /// <summary>
    /// Ends a whole block run through an indirect branch whose target (zero-extended) is in host register
    /// <paramref name="target"/> and already in RIP: follows the indirect-branch cache when it may. Clobbers RAX RCX RDX.
    /// </summary>
    private void ChainIndirect(int target)
    {
        if (_chain == 0 || !_coversWholeBlock)
        {
            EndBlock();
            return;
        }
        Label unlinked = A.CreateLabel();
        A.mov(rdx, Q(target));
        ChainChecks(unlinked);
        if (_bitness != 64)
        {
            A.bts(rdx, (byte)(_stackSize == 4 ? 62 : 61)); // ChainContext.JumpKey
            if (_flat) A.bts(rdx, (byte)ChainContext.FlatKeyBit);
        }
        A.mov(rax, rdx);
        A.shr(rax, 10);
        A.xor(rax, rdx);
        A.and(eax, ChainContext.JumpCacheEntries - 1);
        A.shl(eax, 5);
        A.add(rax, __qword_ptr[r14 + ChainContext.JumpCacheOffset]);
        A.cmp(__qword_ptr[rax], rdx);
        A.jne(unlinked);
        A.mov(rcx, __qword_ptr[rax + 8]);
        A.cmp(rcx, __qword_ptr[r14 + ChainContext.GenerationOffset]);
        A.jne(unlinked);
        TakeLink();
        WriteBackCached();
        A.jmp(__qword_ptr[rax + 16]);
        A.Label(ref unlinked);
        A.mov(__qword_ptr[r14 + ChainContext.PendingExitOffset], (int)ChainContext.IndirectExit);
        EndBlock();
    }

    /// <summary>
    /// The checks before following a link: 32-bit code only with a CS base of 0 (links are made by linear address =
    /// RIP); the budget left after this block must cover any whole block.
    /// </summary>
    private void ChainChecks(Label unlinked)
    {
        if (_bitness != 64 && !_flat)
        {
            A.mov(rax, (ulong)_segBase + 8);
            A.cmp(__qword_ptr[rax], 0);
            A.jne(unlinked);
        }
        A.cmp(r15, _count + BlockDecoder.MaxInstructions);
        A.jl(unlinked);
    }

    /// <summary>Counts this block's run as the dispatch loop would before the next block (budget and instructions retired).</summary>
    private void TakeLink()
    {
        A.sub(r15, _count);
    }

    private Label Miss(int j)
    {
        if (!_missUsed.Contains(j))
        {
            _miss[j] = A.CreateLabel();
            _missUsed.Add(j);
            _missRecord[j] = _pendingAtStart;
        }
        return _miss[j];
    }

    /// <summary>State memory operand for guest register slot <paramref name="slot"/> at <paramref name="size"/> bytes.</summary>
    private static AssemblerMemoryOperand GReg(int slot, int size) =>
        slot >= Instr.Gpr8High ? Mem(1, Rbx, StateLayout.Gpr(slot - Instr.Gpr8High) + 1) : Mem(size, Rbx, StateLayout.Gpr(slot));

    /// <summary>Writes host <paramref name="r"/> to guest register slot with x86 partial-register rules.</summary>
    private void WriteGpr(int slot, int size, int r, bool upperClean)
    {
        if (size == 4 && !upperClean) A.mov(HostReg32(r), HostReg32(r)); // 32-bit writes zero bits 63:32
        if (size >= 4) A.mov(__qword_ptr[rbx + StateLayout.Gpr(slot)], Q(r));
        else _h.Store(size, GReg(slot, size), r);
    }

    private static AssemblerRegister32 HostReg32(int r) => r switch
    {
        Rax => eax, Rcx => ecx, Rdx => edx, Rsi => esi, Rdi => edi, R8n => r8d, R9n => r9d, _ => r10d,
    };

    private void SetRip(ulong rip)
    {
        _h.MovImm(Rax, rip);
        A.mov(__qword_ptr[rbx + StateLayout.Rip], rax);
    }

    private void EndBlock()
    {
        A.mov(eax, _count);
        A.jmp(_exit);
    }

    /// <summary>RSI = effective address of the memory operand (address-size truncated), without the segment base. Flags kept.</summary>
    private void EffectiveAddress(Instr* i)
    {
        if (EffectiveAddressOneLea(i)) return;
        long disp = i->Disp;
        bool dispFits = disp >= int.MinValue && disp <= int.MaxValue;
        if (i->MemBase != Instr.NoRegister)
        {
            A.mov(rsi, __qword_ptr[rbx + StateLayout.Gpr(i->MemBase)]);
            if (dispFits) { if (disp != 0) A.lea(rsi, __[rsi + (int)disp]); }
            else { _h.MovImm(Rax, (ulong)disp); A.lea(rsi, __[rsi + rax]); }
        }
        else
        {
            _h.MovImm(Rsi, (ulong)disp);
        }
        if (i->MemIndex != Instr.NoRegister)
        {
            A.mov(rcx, __qword_ptr[rbx + StateLayout.Gpr(i->MemIndex)]);
            A.lea(rsi, __[rsi + rcx * (1 << i->MemScaleShift)]);
        }
        if (i->AddrSize == 4) A.mov(esi, esi);
    }

    /// <summary>
    /// <see cref="EffectiveAddress"/> as one LEA into ESI (a 32-bit address: the 32-bit LEA wraps it as the guest's
    /// address arithmetic does, SDM Vol. 1 §3.7.5) or RSI. False (nothing emitted) without a base or index register
    /// or when the displacement needs more than 32 bits.
    /// </summary>
    private bool EffectiveAddressOneLea(Instr* i)
    {
        if (!AddressOperand(i, out AssemblerMemoryOperand m)) return false;
        if (i->AddrSize == 4) A.lea(esi, m);
        else A.lea(rsi, m);
        return true;
    }

    /// <summary>
    /// The memory operand's address as a host operand [base + index * scale + disp32]: a guest base or index held in a
    /// host register (GprCache) is used there, another is loaded into RSI (base) or RCX (index). False (nothing
    /// emitted) for an address without a base or index register, a 16-bit address, or a displacement beyond 32 bits.
    /// </summary>
    private bool AddressOperand(Instr* i, out AssemblerMemoryOperand m)
    {
        m = default;
        if (i->AddrSize is not (4 or 8) || (i->MemBase == Instr.NoRegister && i->MemIndex == Instr.NoRegister)) return false;
        long disp = i->AddrSize == 4 ? (int)(uint)i->Disp : i->Disp;
        if (disp != (int)disp) return false;
        int b = -1, x = -1;
        if (i->MemBase != Instr.NoRegister)
        {
            b = _cacheHost[i->MemBase];
            if (b < 0)
            {
                A.mov(rsi, __qword_ptr[rbx + StateLayout.Gpr(i->MemBase)]);
                b = Rsi;
            }
        }
        if (i->MemIndex != Instr.NoRegister)
        {
            x = _cacheHost[i->MemIndex];
            if (x < 0)
            {
                A.mov(rcx, __qword_ptr[rbx + StateLayout.Gpr(i->MemIndex)]);
                x = Rcx;
            }
        }
        m = b >= 0 && x >= 0 ? __[Q(b) + Q(x) * (1 << i->MemScaleShift) + (int)disp]
            : b >= 0 ? __[Q(b) + (int)disp]
            : __[Q(x) * (1 << i->MemScaleShift) + (int)disp];
        return true;
    }

    /// <summary>RSI = linear address of the memory operand (Core.LinearAddress). Flags kept.</summary>
    private void LinearAddress(Instr* i)
    {
        EffectiveAddress(i);
        AddSegmentBase(i->MemSeg);
    }

    /// <summary>RSI += the effective base of segment <paramref name="seg"/>, wrapped to the linear-address width
    /// (64-bit mode: only FS and GS have a base). Flags kept.</summary>
    private void AddSegmentBase(int seg)
    {
        if ((_bitness == 64 || _flat) && seg is not (4 or 5)) return; // a 32-bit effective address is already wrapped
        A.mov(rax, (ulong)_segBase + (ulong)(seg * 8));
        A.mov(rax, __qword_ptr[rax]);
        A.lea(rsi, __[rsi + rax]);
        if (_bitness != 64) A.mov(esi, esi);
    }

    /// <summary>RSI = RDI = the stack pointer (ESP zero-extended for a 32-bit stack).</summary>
    private void LoadStackPointer()
    {
        if (_stack == 8) A.mov(rsi, __qword_ptr[rbx + StateLayout.Gpr(4)]);
        else A.mov(esi, __dword_ptr[rbx + StateLayout.Gpr(4)]);
    }

    /// <summary>Stack pointer = RDI (a 32-bit stack writes ESP only, Core.SetStackPointer).</summary>
    private void StoreStackPointer()
    {
        if (_stack == 8) A.mov(__qword_ptr[rbx + StateLayout.Gpr(4)], rdi);
        else if (_cacheHost[4] >= 0)
        {
            // ESP in a host register: keep bits 63:32 (RDI is zero-extended). The probe before left no host flags live.
            AssemblerRegister64 c = Q(_cacheHost[4]);
            A.shr(c, 32);
            A.shl(c, 32);
            A.or(c, rdi);
        }
        else A.mov(__dword_ptr[rbx + StateLayout.Gpr(4)], edi);
    }

    /// <summary>
    /// The software-TLB fast path of Core.Read/Core.Write for RSI: on a hit RSI becomes the host address; otherwise
    /// leaves through instruction <paramref name="j"/>'s exit. Clobbers RAX, RDX and the host flags.
    /// </summary>
    private void Probe(int j, int size, bool read, bool write)
    {
        Label miss = Miss(j);
        // RAX = the entry's offset in the TLB (R12): (page & mask) * 64 as one shift and one AND.
        System.Diagnostics.Debug.Assert(StateLayout.TlbEntrySize == 64);
        A.mov(rax, rsi);
        A.shr(rax, 12 - 6);
        A.and(eax, (SoftTlb.Entries - 1) << 6);
        // The page of the access's last byte against the tag of the entry chosen by its first byte: an access that
        // crosses into the next page cannot match, as that page's tag lives in the next entry.
        if (size > 1) A.lea(rdx, __[rsi + (size - 1)]);
        else A.mov(rdx, rsi);
        A.and(rdx, -4096);
        if (read)
        {
            A.cmp(__qword_ptr[r12 + rax + StateLayout.TlbReadTag], rdx);
            A.jne(miss);
        }
        if (write)
        {
            A.cmp(__qword_ptr[r12 + rax + StateLayout.TlbWriteTag], rdx);
            A.jne(miss);
        }
        A.add(rsi, __qword_ptr[r12 + rax + StateLayout.TlbAddend]);
        _hostValid = false;
    }

    /// <summary>Lock-step only: records (host address, old value, size) of the store about to happen at [RSI]. Flags kept.</summary>
    private void LogStore(int size)
    {
        if (_log == 0) return;
        A.mov(r8, __qword_ptr[r14]);
        A.lea(r9, __[r8 + r8 * 2]);
        A.lea(r9, __[r14 + r9 * 8 + 8]);
        A.mov(__qword_ptr[r9], rsi);
        _h.LoadZx(R10n, size, Mem(size, Rsi, 0));
        A.mov(__qword_ptr[r9 + 8], r10);
        A.mov(__qword_ptr[r9 + 16], size);
        A.lea(r8, __[r8 + 1]);
        A.mov(__qword_ptr[r14], r8);
    }

    /// <summary>Loads operand 1 (register, immediate or the already-probed memory at [RSI]) into <paramref name="r"/>.</summary>
    private void LoadSource(Instr* i, int size, int r)
    {
        if (i->Op1 == Instr.MemoryOperand) _h.LoadZx(r, size, Mem(size, Rsi, 0));
        else if (i->Op1 == Instr.NoRegister) _h.MovImm(r, i->Imm);
        else _h.LoadZx(r, size, GReg(i->Op1, size));
    }

    private void StoreLazy(LazyFlagOp op, int size, int result, int src1, int src2)
    {
        if (_deadFlags)
        {
            DropFlagState();
            return;
        }
        long opAndSize = (long)op | ((long)size << 32);
        if (_storedOp != opAndSize)
        {
            // Two immediate stores: no scratch register, so R10 stays free for a guest register (FreeScratch).
            A.mov(__dword_ptr[rbx + StateLayout.LazyOp], (int)op);
            if ((_storedOp >> 32) != size) A.mov(__dword_ptr[rbx + StateLayout.LazySize], size);
            _storedOp = opAndSize;
        }
        A.mov(__qword_ptr[rbx + StateLayout.LazyResult], Q(result));
        if (src1 >= 0) A.mov(__qword_ptr[rbx + StateLayout.LazySrc1], Q(src1));
        if (src2 >= 0) A.mov(__qword_ptr[rbx + StateLayout.LazySrc2], Q(src2));
        _flags = FlagState.Lazy;
        _lazyOp = op;
        _lazySize = size;
    }

    /// <summary>RFLAGS arithmetic bits = EDX (CF PF AF ZF SF OF already masked), lazy state dropped (LazyFlags.SetEager).</summary>
    private void StoreEager()
    {
        if (_deadFlags)
        {
            DropFlagState();
            return;
        }
        A.mov(rcx, __qword_ptr[rbx + StateLayout.Rflags]);
        A.and(rcx, ~Arith);
        A.or(rcx, rdx);
        A.mov(__qword_ptr[rbx + StateLayout.Rflags], rcx);
        if ((_storedOp & 0xFFFF_FFFF) != 0) A.mov(__dword_ptr[rbx + StateLayout.LazyOp], 0);
        _storedOp = _storedOp == -1 ? 0 : _storedOp & ~0xFFFF_FFFFL;
        _flags = FlagState.Eager;
        _hostValid = false;
    }

    /// <summary>
    /// After an instruction whose flags are dead: what CpuState holds is the older state, which nobody reads before the
    /// next instruction writing every flag, so the compiler only forgets what it knew about the flags.
    /// </summary>
    private void DropFlagState()
    {
        _flags = FlagState.Unknown;
        _hostValid = _hostCfValid = false;
    }

    private void CallMaterialize()
    {
        A.mov(rax, (ulong)_materialize);
        A.call(rax);
        _storedOp = _storedOp == -1 ? -1 : _storedOp & ~0xFFFF_FFFFL; // LazyOp = 0, LazySize kept
    }

    /// <summary>Loads the concrete RFLAGS arithmetic bits into the host flags.</summary>
    private void RflagsToHost()
    {
        A.mov(rax, __qword_ptr[rbx + StateLayout.Rflags]);
        A.and(eax, Arith);
        A.push(rax);
        A.popfq();
    }

    /// <summary>Makes the host flags equal the guest's (CF included when <paramref name="needCarry"/>).</summary>
    private void FlagsToHost(bool needCarry)
    {
        if (_hostValid && (!needCarry || _hostCfValid)) return;
        switch (_flags)
        {
            case FlagState.Lazy:
                switch (_lazyOp)
                {
                    case LazyFlagOp.Add:
                    case LazyFlagOp.Sub:
                        A.mov(rax, __qword_ptr[rbx + StateLayout.LazySrc1]);
                        A.mov(rcx, __qword_ptr[rbx + StateLayout.LazySrc2]);
                        _h.Alu(_lazyOp == LazyFlagOp.Add ? Op.Add : Op.Cmp, _lazySize, Rax, Rcx);
                        break;
                    case LazyFlagOp.Logic:
                        A.mov(rax, __qword_ptr[rbx + StateLayout.LazyResult]);
                        _h.Alu(Op.Test, _lazySize, Rax, Rax);
                        break;
                    default:
                        A.mov(rax, __qword_ptr[rbx + StateLayout.LazySrc1]);
                        A.bt(__qword_ptr[rbx + StateLayout.Rflags], (sbyte)0);
                        _h.IncDec(_lazyOp == LazyFlagOp.Inc, _lazySize, Rax);
                        break;
                }
                break;
            case FlagState.Eager:
                RflagsToHost();
                break;
            default:
                CallMaterialize();
                RflagsToHost();
                _flags = FlagState.Eager;
                break;
        }
        _hostValid = _hostCfValid = true;
    }

    /// <summary>Before INC/DEC: RFLAGS.CF holds the guest CF (what LazyFlags.SetIncDec does).</summary>
    private void CarryToRflags()
    {
        switch (_flags)
        {
            case FlagState.Eager:
                return;
            case FlagState.Lazy when _lazyOp is LazyFlagOp.Inc or LazyFlagOp.Dec:
                return;
            case FlagState.Lazy when _lazyOp == LazyFlagOp.Logic:
                A.and(__qword_ptr[rbx + StateLayout.Rflags], -2);
                _hostValid = false;
                return;
            case FlagState.Lazy:
                FlagsToHost(needCarry: true);
                A.setc(al);
                A.movzx(eax, al);
                A.and(__qword_ptr[rbx + StateLayout.Rflags], -2);
                A.or(__qword_ptr[rbx + StateLayout.Rflags], rax);
                _hostValid = false;
                return;
            default:
                CarryFromState();
                _hostValid = false;
                return;
        }
    }

    /// <summary>
    /// RFLAGS.CF = the guest CF of whatever flag state CpuState holds (LazyFlags.Carry, inline): kept for None/INC/DEC,
    /// 0 after a logic operation, the carry or borrow of a pending ADD or SUB at its size. The lazy state stays.
    /// </summary>
    private void CarryFromState()
    {
        Label add = A.CreateLabel(), sub = A.CreateLabel(), compare = A.CreateLabel(), done = A.CreateLabel();
        A.mov(eax, __dword_ptr[rbx + StateLayout.LazyOp]);
        A.cmp(eax, (int)LazyFlagOp.Add);
        A.je(add);
        A.cmp(eax, (int)LazyFlagOp.Sub);
        A.je(sub);
        A.cmp(eax, (int)LazyFlagOp.Logic);
        A.jne(done);
        A.and(__qword_ptr[rbx + StateLayout.Rflags], -2);
        A.jmp(done);
        A.Label(ref add);
        A.mov(rax, __qword_ptr[rbx + StateLayout.LazyResult]); // CF = result < src1
        A.mov(rdx, __qword_ptr[rbx + StateLayout.LazySrc1]);
        A.jmp(compare);
        A.Label(ref sub);
        A.mov(rax, __qword_ptr[rbx + StateLayout.LazySrc1]); // CF = src1 < src2
        A.mov(rdx, __qword_ptr[rbx + StateLayout.LazySrc2]);
        A.Label(ref compare);
        A.mov(ecx, 64); // compare the low LazySize bytes: shift them to the top
        A.mov(r8d, __dword_ptr[rbx + StateLayout.LazySize]);
        A.shl(r8d, 3);
        A.sub(ecx, r8d);
        A.shl(rax, cl);
        A.shl(rdx, cl);
        A.cmp(rax, rdx);
        A.setb(al);
        A.movzx(eax, al);
        A.and(__qword_ptr[rbx + StateLayout.Rflags], -2);
        A.or(__qword_ptr[rbx + StateLayout.Rflags], rax);
        A.Label(ref done);
    }

    // ------------------------------------------------------------------ instructions

    private void Alu(Instr* i, int j, Op op)
    {
        if (AluOnHostRegister(i, j, op)) return;
        int size = i->OpSize;
        bool dstMem = i->Op0 == Instr.MemoryOperand;
        bool writes = op is not (Op.Cmp or Op.Test);
        if (dstMem || i->Op1 == Instr.MemoryOperand)
        {
            LinearAddress(i);
            Probe(j, size, read: true, write: dstMem && writes);
            if (dstMem && writes) LogStore(size);
        }
        if (dstMem) _h.LoadZx(Rax, size, Mem(size, Rsi, 0));
        else _h.LoadZx(Rax, size, GReg(i->Op0, size));
        LoadSource(i, size, Rcx);
        bool arith = op is Op.Add or Op.Sub or Op.Cmp;
        if (arith) A.mov(rdx, rax);
        // CMP and TEST compute into a copy (same flags as the host CMP/TEST) so the lazy result exists.
        _h.Alu(op == Op.Cmp ? Op.Sub : op == Op.Test ? Op.And : op, size, Rax, Rcx);
        if (writes)
        {
            if (dstMem) _h.Store(size, Mem(size, Rsi, 0), Rax);
            else WriteGpr(i->Op0, size, Rax, upperClean: true);
        }
        if (arith) StoreLazy(op == Op.Add ? LazyFlagOp.Add : LazyFlagOp.Sub, size, Rax, Rdx, Rcx);
        else StoreLazy(LazyFlagOp.Logic, size, Rax, -1, -1);
        _hostValid = _hostCfValid = !_deadFlags;
    }

    /// <summary>
    /// ADD/OR/AND/SUB/XOR/CMP/TEST of 32 or 64 bits whose destination is a guest register held in a host register
    /// (GprCache): the host instruction on that register, with the lazy record stored only when the flags are live.
    /// False (nothing emitted) for every other form.
    /// </summary>
    private bool AluOnHostRegister(Instr* i, int j, Op op)
    {
        int size = i->OpSize;
        if (i->Op0 >= 16 || _cacheHost[i->Op0] < 0) return false;
        bool imm = i->Op1 == Instr.NoRegister;
        if (imm && size == 8 && (long)i->Imm != (int)(long)i->Imm) return false;
        int d = _cacheHost[i->Op0];
        bool writes = op is not (Op.Cmp or Op.Test);
        bool arith = op is Op.Add or Op.Sub or Op.Cmp;
        if (_deadFlags && !writes)
        {
            // A compare nobody reads: only its memory operand's access remains (it may fault).
            if (i->Op1 == Instr.MemoryOperand)
            {
                LinearAddress(i);
                Probe(j, size, read: true, write: false);
            }
            DropFlagState();
            return true;
        }
        if (!_deadFlags && i->Op1 != Instr.MemoryOperand)
        {
            int srcHost = imm ? -1 : i->Op1 < 16 ? _cacheHost[i->Op1] : -2;
            if ((imm || (srcHost >= 0 && i->Op1 != i->Op0)) && CanDefer(j, i->Op0, imm ? -1 : i->Op1))
            {
                if (writes) HostAlu(op, size, d, srcHost, i->Imm);
                DeferredKind kind = op switch
                {
                    Op.Add => DeferredKind.Add, Op.Sub => DeferredKind.Sub, Op.Cmp => DeferredKind.Cmp, Op.Test => DeferredKind.Test,
                    _ => DeferredKind.Logic,
                };
                Defer(new DeferredRecord(kind, size, d, srcHost, i->Imm));
                return true;
            }
        }
        // The record's operands are stored as they are: its readers (LazyFlags, the materialize stub) only look at the
        // low LazySize bytes, so a cached 32-bit register's bits 63:32 do not matter.
        int src = -1; // host register holding the source, or -1 for the immediate
        if (i->Op1 == Instr.MemoryOperand)
        {
            LinearAddress(i);
            Probe(j, size, read: true, write: false);
            _h.LoadZx(Rcx, size, Mem(size, Rsi, 0));
            src = Rcx;
        }
        else if (!imm)
        {
            src = i->Op1 < 16 ? _cacheHost[i->Op1] : -1;
            if (src < 0)
            {
                _h.LoadZx(Rcx, size, GReg(i->Op1, size));
                src = Rcx;
            }
        }
        if (_deadFlags)
        {
            HostAlu(op, size, d, src, i->Imm);
            DropFlagState();
            return true;
        }
        int result = d, src1 = d;
        if (writes)
        {
            if (arith && src == d)
            {
                A.mov(rdx, Q(d)); // ADD/SUB r, r: both sources are the value before the write
                src = src1 = Rdx;
            }
            if (arith) A.mov(__qword_ptr[rbx + StateLayout.LazySrc1], Q(src1));
            HostAlu(op, size, d, src, i->Imm);
        }
        else
        {
            A.mov(rax, Q(d));
            HostAlu(op == Op.Cmp ? Op.Sub : Op.And, size, Rax, src, i->Imm);
            result = Rax;
            if (arith) A.mov(__qword_ptr[rbx + StateLayout.LazySrc1], Q(d));
        }
        StoreLazy(arith ? op == Op.Add ? LazyFlagOp.Add : LazyFlagOp.Sub : LazyFlagOp.Logic, size, result, -1, -1);
        if (arith)
        {
            if (src >= 0) A.mov(__qword_ptr[rbx + StateLayout.LazySrc2], Q(src));
            else A.mov(__qword_ptr[rbx + StateLayout.LazySrc2], Imm32(size, i->Imm));
        }
        _hostValid = _hostCfValid = true;
        return true;
    }

    private static AssemblerRegister32 R32Of(int host) => HostAsm.R32Of(host);

    /// <summary>d (op)= source: host register <paramref name="s"/>, or the immediate when <paramref name="s"/> is -1.</summary>
    private void HostAlu(Op op, int size, int d, int s, ulong imm)
    {
        if (s >= 0)
        {
            _h.Alu(op, size, d, s);
            return;
        }
        _h.AluImm(op, size, d, Imm32(size, imm));
    }

    /// <summary>The immediate of a <paramref name="size"/>-byte operation as a host imm32 with the same low bytes.</summary>
    private static int Imm32(int size, ulong imm) => size switch
    {
        1 => (sbyte)(byte)imm,
        2 => (short)(ushort)imm,
        4 => (int)(uint)imm,
        _ => (int)(long)imm,
    };

    /// <summary>
    /// ADC/SBB: the host instruction with the guest CF as carry-in. The interpreter makes their flags concrete at once
    /// (Handlers/Arithmetic.cs), and every flag they write is defined (SDM Vol. 2A ADC, Vol. 2B SBB), so the host's are stored eagerly.
    /// </summary>
    private void AdcSbb(Instr* i, int j, Op op)
    {
        int size = i->OpSize;
        bool dstMem = i->Op0 == Instr.MemoryOperand;
        if (dstMem || i->Op1 == Instr.MemoryOperand)
        {
            LinearAddress(i);
            Probe(j, size, read: true, write: dstMem);
            if (dstMem) LogStore(size);
        }
        FlagsToHost(needCarry: true); // keeps RSI; only MOVs from here to the ADC/SBB
        if (dstMem) _h.LoadZx(Rax, size, Mem(size, Rsi, 0));
        else _h.LoadZx(Rax, size, GReg(i->Op0, size));
        LoadSource(i, size, Rcx);
        _h.Alu(op, size, Rax, Rcx);
        A.pushfq();
        A.pop(rdx);
        A.and(edx, Arith);
        if (dstMem) _h.Store(size, Mem(size, Rsi, 0), Rax);
        else WriteGpr(i->Op0, size, Rax, upperClean: true);
        StoreEager();
    }

    private void IncDec(Instr* i, int j, bool inc)
    {
        int size = i->OpSize;
        if (!_deadFlags) CarryToRflags(); // the CF INC/DEC keep
        bool mem = i->Op0 == Instr.MemoryOperand;
        if (!mem && size is 4 or 8 && i->Op0 < 16 && _cacheHost[i->Op0] >= 0)
        {
            // A guest register held in a host register: INC/DEC on it, the lazy record only when the flags are live.
            int d = _cacheHost[i->Op0];
            if (_deadFlags)
            {
                _h.IncDec(inc, size, d);
                DropFlagState();
                return;
            }
            if (CanDefer(j, i->Op0, -1))
            {
                _h.IncDec(inc, size, d);
                Defer(new DeferredRecord(inc ? DeferredKind.Inc : DeferredKind.Dec, size, d, -1, 1));
                return;
            }
            if (size == 4) A.mov(edx, R32Of(d));
            else A.mov(rdx, Q(d));
            _h.IncDec(inc, size, d);
            A.mov(__qword_ptr[rbx + StateLayout.LazySrc2], 1);
            StoreLazy(inc ? LazyFlagOp.Inc : LazyFlagOp.Dec, size, d, Rdx, -1);
            _hostValid = true;
            _hostCfValid = false;
            return;
        }
        if (mem)
        {
            LinearAddress(i);
            Probe(j, size, read: true, write: true);
            LogStore(size);
            _h.LoadZx(Rax, size, Mem(size, Rsi, 0));
        }
        else
        {
            _h.LoadZx(Rax, size, GReg(i->Op0, size));
        }
        A.mov(rdx, rax);
        _h.IncDec(inc, size, Rax);
        if (mem) _h.Store(size, Mem(size, Rsi, 0), Rax);
        else WriteGpr(i->Op0, size, Rax, upperClean: true);
        if (!_deadFlags) A.mov(__qword_ptr[rbx + StateLayout.LazySrc2], 1);
        StoreLazy(inc ? LazyFlagOp.Inc : LazyFlagOp.Dec, size, Rax, Rdx, -1);
        if (_deadFlags) return;
        _hostValid = true;
        _hostCfValid = false; // the host CF is whatever it was before; the guest CF is in RFLAGS
    }

    private void Mov(Instr* i, int j)
    {
        int size = i->OpSize;
        // A 32- or 64-bit guest register held in a host register is loaded, stored or copied on that register.
        int d = size is 4 or 8 && i->Op0 < 16 ? _cacheHost[i->Op0] : -1;
        int s = size is 4 or 8 && i->Op1 < 16 ? _cacheHost[i->Op1] : -1;
        if (i->Op1 == Instr.MemoryOperand)
        {
            LinearAddress(i);
            Probe(j, size, read: true, write: false);
            if (d >= 0)
            {
                _h.LoadZx(d, size, Mem(size, Rsi, 0));
                return;
            }
            _h.LoadZx(Rax, size, Mem(size, Rsi, 0));
            WriteGpr(i->Op0, size, Rax, upperClean: true);
        }
        else if (i->Op0 == Instr.MemoryOperand)
        {
            LinearAddress(i);
            Probe(j, size, read: false, write: true);
            LogStore(size);
            if (s >= 0)
            {
                _h.Store(size, Mem(size, Rsi, 0), s);
                return;
            }
            LoadSource(i, size, Rcx);
            _h.Store(size, Mem(size, Rsi, 0), Rcx);
        }
        else if (d >= 0 && (s >= 0 || i->Op1 == Instr.NoRegister))
        {
            if (s >= 0 && size == 4) A.mov(R32Of(d), R32Of(s));
            else if (s >= 0) A.mov(Q(d), Q(s));
            else if (size == 4) A.mov(R32Of(d), (uint)i->Imm);
            else _h.MovImm(d, i->Imm);
        }
        else
        {
            LoadSource(i, size, Rax);
            WriteGpr(i->Op0, size, Rax, upperClean: size != 4 || i->Op1 != Instr.NoRegister || i->Imm <= uint.MaxValue);
        }
    }

    private void Extend(Instr* i, int j, bool signed)
    {
        int src = i->Op1Size, size = i->OpSize;
        AssemblerMemoryOperand m;
        if (i->Op1 == Instr.MemoryOperand)
        {
            LinearAddress(i);
            Probe(j, src, read: true, write: false);
            m = Mem(src, Rsi, 0);
        }
        else
        {
            m = GReg(i->Op1, src);
        }
        int d = size is 4 or 8 && i->Op0 < 16 ? _cacheHost[i->Op0] : -1;
        if (d >= 0 && (!signed || size == 8 || src < 4))
        {
            // Into a guest register held in a host register: one host MOVZX/MOVSX (a 32-bit one clears bits 63:32).
            if (!signed) _h.LoadZx(d, src, m);
            else if (size == 8) _h.LoadSx(d, src, m);
            else A.movsx(R32Of(d), m);
            return;
        }
        if (signed) _h.LoadSx(Rax, src, m); else _h.LoadZx(Rax, src, m);
        WriteGpr(i->Op0, size, Rax, upperClean: !signed);
    }

    private void Lea(Instr* i)
    {
        // LEA of the address size into a guest register held in a host register: one host LEA.
        if (i->OpSize == i->AddrSize && i->Op0 < 16 && _cacheHost[i->Op0] >= 0 && AddressOperand(i, out AssemblerMemoryOperand m))
        {
            if (i->OpSize == 4) A.lea(R32Of(_cacheHost[i->Op0]), m);
            else A.lea(Q(_cacheHost[i->Op0]), m);
            return;
        }
        EffectiveAddress(i);
        WriteGpr(i->Op0, i->OpSize, Rsi, upperClean: false);
    }

    private void Shift(Instr* i, int j, Op op)
    {
        int size = i->OpSize, bits = size * 8;
        bool mem = i->Op0 == Instr.MemoryOperand;
        bool byCl = i->Op1 != Instr.NoRegister;
        int count = byCl ? -1 : (int)(i->Imm & (size == 8 ? 0x3FUL : 0x1FUL));
        if (_deadFlags && !mem && !byCl && i->Op0 < 16 && _cacheHost[i->Op0] >= 0)
        {
            _h.Shift(op, size, _cacheHost[i->Op0], count); // a register held in a host register, flags unread
            DropFlagState();
            return;
        }
        if (HostAsm.HasLahf && !mem && !byCl && !(op == Op.Shr && count == 1) && i->Op0 < 16 && _cacheHost[i->Op0] >= 0)
        {
            // The same with live flags: CF ZF SF PF from the host through LAHF (cheaper than PUSHF), AF = 0, OF as
            // Shifts.ShiftFast: MSB(result) ^ CF for SHL, 0 for SAR and for SHR by more than 1.
            int d = _cacheHost[i->Op0];
            _h.Shift(op, size, d, count);
            A.lahf();
            A.movzx(edx, ah);
            A.and(edx, 0xC5);
            if (op == Op.Shl)
            {
                A.mov(rax, Q(d));
                A.shr(rax, (byte)(bits - 1));
                A.xor(eax, edx);
                A.and(eax, 1);
                A.shl(eax, 11);
                A.or(edx, eax);
            }
            StoreEager();
            _hostValid = false;
            return;
        }
        if (mem)
        {
            LinearAddress(i);
            Probe(j, size, read: true, write: true);
            LogStore(size);
            _h.LoadZx(Rax, size, Mem(size, Rsi, 0));
        }
        else
        {
            _h.LoadZx(Rax, size, GReg(i->Op0, size));
        }
        Label zero = A.CreateLabel(), done = A.CreateLabel();
        if (byCl)
        {
            A.mov(r8, rax);
            A.movzx(ecx, __byte_ptr[rbx + StateLayout.Gpr(1)]);
            A.and(ecx, size == 8 ? 0x3F : 0x1F);
            // Count 0: no flags change; only a 32-bit register destination is still written (zero-extended).
            A.jz(!mem && size == 4 ? zero : done);
        }
        _h.Shift(op, size, Rax, count);
        if (_deadFlags)
        {
            if (mem) _h.Store(size, Mem(size, Rsi, 0), Rax);
            else WriteGpr(i->Op0, size, Rax, upperClean: true);
            DropFlagState();
            if (byCl)
            {
                if (!mem && size == 4)
                {
                    A.jmp(done);
                    A.Label(ref zero);
                    WriteGpr(i->Op0, 4, Rax, upperClean: true);
                }
                A.Label(ref done);
            }
            return;
        }
        A.pushfq();
        A.pop(rdx);
        // Shifts.ShiftFast: CF ZF SF PF from the result, AF = 0, OF = MSB(result) ^ CF for SHL, MSB(source) for
        // SHR by 1 (0 for other SHR counts), 0 for SAR.
        if (op == Op.Shr && count == 1) A.and(edx, 0x8C5);
        else A.and(edx, 0xC5);
        if (op == Op.Shl)
        {
            A.mov(r9, rax);
            A.shr(r9, (byte)(bits - 1));
            A.xor(r9d, edx);
            A.and(r9d, 1);
            A.shl(r9d, 11);
            A.or(edx, r9d);
        }
        else if (op == Op.Shr && byCl)
        {
            Label notOne = A.CreateLabel();
            A.cmp(ecx, 1);
            A.jne(notOne);
            A.mov(r9, r8);
            A.shr(r9, (byte)(bits - 1));
            A.and(r9d, 1);
            A.shl(r9d, 11);
            A.or(edx, r9d);
            A.Label(ref notOne);
        }
        if (mem) _h.Store(size, Mem(size, Rsi, 0), Rax);
        else WriteGpr(i->Op0, size, Rax, upperClean: true);
        StoreEager();
        if (byCl)
        {
            if (!mem && size == 4)
            {
                A.jmp(done);
                A.Label(ref zero);
                WriteGpr(i->Op0, 4, Rax, upperClean: true);
            }
            A.Label(ref done);
            _flags = FlagState.Unknown;
            _storedOp = -1; // one path stored flags, the other (count 0) did not
        }
        _hostValid = false;
    }

    private void Imul(Instr* i, int j)
    {
        int size = i->OpSize;
        bool three = ((Code)i->Code).ToOpCode().OpCount == 3;
        if (i->Op1 == Instr.MemoryOperand)
        {
            LinearAddress(i);
            Probe(j, size, read: true, write: false);
        }
        int d = _deadFlags && i->Op0 < 16 ? _cacheHost[i->Op0] : -1;
        if (d >= 0 && (!three || size == 4 || (long)i->Imm == (int)(long)i->Imm))
        {
            // Flags unread, destination held in a host register: the host IMUL on it.
            int s = i->Op1 == Instr.MemoryOperand ? -1 : i->Op1 < 16 ? _cacheHost[i->Op1] : -1;
            if (s < 0)
            {
                LoadSource(i, size, Rcx);
                s = Rcx;
            }
            int imm = size == 4 ? (int)(uint)i->Imm : (int)(long)i->Imm;
            if (size == 4)
            {
                if (three) A.imul(R32Of(d), R32Of(s), imm);
                else A.imul(R32Of(d), R32Of(s));
            }
            else
            {
                if (three) A.imul(Q(d), Q(s), imm);
                else A.imul(Q(d), Q(s));
            }
            DropFlagState();
            return;
        }
        if (three)
        {
            LoadSource(i, size, Rax); // the r/m operand
            _h.MovImm(Rcx, i->Imm);
        }
        else
        {
            _h.LoadZx(Rax, size, GReg(i->Op0, size));
            LoadSource(i, size, Rcx);
        }
        _h.Alu(Op.Imul, size, Rax, Rcx);
        if (!_deadFlags) A.seto(r9b);
        WriteGpr(i->Op0, size, Rax, upperClean: true);
        StoreMulFlags(size);
    }

    /// <summary>MUL / one-operand IMUL r/m (Arithmetic.MulOne): rDX:rAX = rAX * src, flags as SetMulFlags.</summary>
    private void MulOne(Instr* i, int j, bool signed)
    {
        int size = i->OpSize;
        LoadRm(i, j, i->Op0);
        _h.LoadZx(Rax, size, GReg(0, size));
        _h.MulAccumulator(signed, size, 11);
        if (!_deadFlags) A.seto(r9b);
        WriteGpr(0, size, Rax, upperClean: true);
        WriteGpr(2, size, Rdx, upperClean: true);
        StoreMulFlags(size);
    }

    /// <summary>
    /// Arithmetic.SetMulFlags from the product's low half in RAX and the overflow in R9B: CF = OF = overflow, SF ZF PF of
    /// the low half, AF = 0 (SDM Vol. 2A MUL/IMUL leave SF ZF AF PF undefined; these are the interpreter's values).
    /// </summary>
    private void StoreMulFlags(int size)
    {
        if (_deadFlags)
        {
            DropFlagState();
            return;
        }
        _h.Alu(Op.Test, size, Rax, Rax);
        A.pushfq();
        A.pop(rdx);
        A.and(edx, 0xC4);
        A.movzx(r9d, r9b);
        A.imul(r9d, r9d, 0x801);
        A.or(edx, r9d);
        StoreEager();
    }

    /// <summary>CDQ/CQO (EDX/RDX = sign of EAX/RAX) and CWDE/CDQE (EAX/RAX = AX/EAX sign-extended); flags unchanged, host flags too.</summary>
    private void SignExtendAccumulator(Mnemonic m)
    {
        switch (m)
        {
            case Mnemonic.Cdq:
                A.mov(eax, __dword_ptr[rbx + StateLayout.Gpr(0)]);
                A.cdq();
                WriteGpr(2, 4, Rdx, upperClean: true);
                break;
            case Mnemonic.Cqo:
                A.mov(rax, __qword_ptr[rbx + StateLayout.Gpr(0)]);
                A.cqo();
                WriteGpr(2, 8, Rdx, upperClean: true);
                break;
            case Mnemonic.Cwde:
                A.movsx(eax, __word_ptr[rbx + StateLayout.Gpr(0)]);
                WriteGpr(0, 4, Rax, upperClean: true);
                break;
            default:
                A.movsxd(rax, __dword_ptr[rbx + StateLayout.Gpr(0)]);
                WriteGpr(0, 8, Rax, upperClean: true);
                break;
        }
    }

    /// <summary>
    /// DIV/IDIV r/m32, r/m64 (SDM Vol. 2A DIV, IDIV). A zero divisor, or a dividend whose quotient might not fit, leaves
    /// the translated code before the instruction, so the interpreter raises the #DE (or divides, in the rare signed case
    /// the quick test cannot prove safe); the host never faults. The guest flags are left as they were, as the
    /// interpreter leaves them (their values are undefined by the SDM).
    /// </summary>
    private void Divide(Instr* i, int j, bool signed)
    {
        int size = i->OpSize;
        LoadRm(i, j, i->Op0);
        Label miss = Miss(j);
        _h.LoadZx(Rax, size, GReg(0, size));
        _h.LoadZx(Rdx, size, GReg(2, size));
        if (size == 8)
        {
            A.test(r11, r11);
            A.jz(miss);
            if (!signed)
            {
                A.cmp(rdx, r11); // RDX < divisor: the quotient fits in 64 bits
                A.jae(miss);
                A.div(r11);
            }
            else
            {
                A.mov(r8, rax); // RDX:RAX must be RAX sign-extended, and not MIN / -1
                A.sar(r8, 63);
                A.cmp(r8, rdx);
                A.jne(miss);
                Label ok = A.CreateLabel();
                A.cmp(r11, -1);
                A.jne(ok);
                A.mov(r8, 0x8000_0000_0000_0000UL);
                A.cmp(rax, r8);
                A.je(miss);
                A.Label(ref ok);
                A.idiv(r11);
            }
        }
        else
        {
            A.test(r11d, r11d);
            A.jz(miss);
            if (!signed)
            {
                A.cmp(edx, r11d);
                A.jae(miss);
                A.div(r11d);
            }
            else
            {
                A.mov(r8d, eax);
                A.sar(r8d, 31);
                A.cmp(r8d, edx);
                A.jne(miss);
                Label ok = A.CreateLabel();
                A.cmp(r11d, -1);
                A.jne(ok);
                A.cmp(eax, unchecked((int)0x8000_0000));
                A.je(miss);
                A.Label(ref ok);
                A.idiv(r11d);
            }
        }
        WriteGpr(0, size, Rax, upperClean: true);
        WriteGpr(2, size, Rdx, upperClean: true);
        _hostValid = _hostCfValid = false; // the host flags are the division's (undefined); the guest's are in CpuState
    }

    /// <summary>Whether condition <paramref name="cc"/> reads CF (B/AE, BE/A).</summary>
    private static bool ReadsCarry(int cc) => (cc >> 1) is 1 or 3;

    /// <summary>SETcc r/m8 (ControlFlow.Setcc).</summary>
    private void Setcc(Instr* i, int j)
    {
        int cc = i->Sub;
        FlagsToHost(ReadsCarry(cc));
        _h.Setcc(cc, 11);
        if (i->Op0 == Instr.MemoryOperand)
        {
            LinearAddress(i);
            Probe(j, 1, read: false, write: true);
            LogStore(1);
            _h.Store(1, Mem(1, Rsi, 0), 11);
        }
        else
        {
            _h.Store(1, GReg(i->Op0, 1), 11);
        }
    }

    /// <summary>CMOVcc r, r/m (ControlFlow.Cmovcc): the source is read either way; a 32-bit destination is always written.</summary>
    private void Cmovcc(Instr* i, int j)
    {
        int cc = i->Sub, size = i->OpSize;
        LoadRm(i, j, i->Op1);
        FlagsToHost(ReadsCarry(cc));
        _h.LoadZx(Rdx, size, GReg(i->Op0, size));
        _h.Cmovcc(cc, size, Rdx, 11);
        WriteGpr(i->Op0, size, Rdx, upperClean: true);
    }

    private void Push(Instr* i, int j)
    {
        if (i->Op0 == Instr.NoRegister) _h.MovImm(Rcx, i->Imm);
        else A.mov(rcx, __qword_ptr[rbx + StateLayout.Gpr(i->Op0)]);
        PushRcx(j);
    }

    /// <summary>Pushes the low stack-size bytes of RCX (Core.Push); the stack pointer changes only after the store succeeded.</summary>
    private void PushRcx(int j)
    {
        LoadStackPointer();
        if (_stack == 8) A.lea(rsi, __[rsi - 8]);
        else A.lea(esi, __[rsi - 4]);
        A.mov(rdi, rsi);
        AddSegmentBase(2);
        Probe(j, _stack, read: false, write: true);
        LogStore(_stack);
        _h.Store(_stack, Mem(_stack, Rsi, 0), Rcx);
        StoreStackPointer();
    }

    /// <summary>RCX = the value at the top of the stack (zero-extended), RDI = the stack pointer after the pop plus <paramref name="extra"/>.</summary>
    private void PopRcx(int j, int extra)
    {
        LoadStackPointer();
        A.mov(rdi, rsi);
        AddSegmentBase(2);
        Probe(j, _stack, read: true, write: false);
        _h.LoadZx(Rcx, _stack, Mem(_stack, Rsi, 0));
        if (_stack == 8) A.lea(rdi, __[rdi + 8 + extra]);
        else A.lea(edi, __[rdi + 4 + extra]);
        StoreStackPointer();
    }

    private void Pop(Instr* i, int j)
    {
        PopRcx(j, 0);
        A.mov(__qword_ptr[rbx + StateLayout.Gpr(i->Op0)], rcx); // POP rSP: the popped value wins (SDM POP)
    }

    private void Jmp(Instr* i, int j)
    {
        if (((Code)i->Code).IsJmpShortOrNear())
        {
            BranchTo(i->Imm);
            return;
        }
        LoadTarget(i, j);
        A.mov(__qword_ptr[rbx + StateLayout.Rip], r11);
        ChainIndirect(11);
    }

    /// <summary>R11 = the target of an indirect JMP/CALL (register or memory, zero-extended from the operand size).</summary>
    private void LoadTarget(Instr* i, int j) => LoadRm(i, j, i->Op0);

    /// <summary>
    /// R11 = the r/m operand <paramref name="rm"/> (<c>i->Op0</c> or <c>i->Op1</c>): a guest register, or memory through
    /// the software-TLB probe; zero-extended from the operand size.
    /// </summary>
    private void LoadRm(Instr* i, int j, int rm)
    {
        int size = i->OpSize;
        if (rm == Instr.MemoryOperand)
        {
            LinearAddress(i);
            Probe(j, size, read: true, write: false);
            _h.LoadZx(11, size, Mem(size, Rsi, 0));
        }
        else
        {
            _h.LoadZx(11, size, GReg(rm, size));
        }
    }

    private void Call(Instr* i, int j)
    {
        bool direct = ((Code)i->Code).IsCallNear();
        if (!direct) LoadTarget(i, j);
        _h.MovImm(Rcx, i->NextIp);
        PushRcx(j);
        if (direct)
        {
            ChainTo(i->Imm);
            return;
        }
        A.mov(__qword_ptr[rbx + StateLayout.Rip], r11);
        ChainIndirect(11);
    }

    private void Ret(Instr* i, int j)
    {
        PopRcx(j, (ushort)i->Imm);
        A.mov(__qword_ptr[rbx + StateLayout.Rip], rcx);
        ChainIndirect(Rcx);
    }

    private void Jcc(Instr* i)
    {
        int cc = i->Sub;
        FlagsToHost(ReadsCarry(cc));
        Label taken = A.CreateLabel();
        _h.Jcc(cc, taken);
        ChainTo(i->NextIp);
        A.Label(ref taken);
        BranchTo(i->Imm);
    }
}
