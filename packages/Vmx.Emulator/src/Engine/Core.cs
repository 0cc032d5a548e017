using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace VmmKit.Vmx.Emulator.Engine;

/// <summary>
/// The execution engine: architectural state (<see cref="State"/>, native memory), software TLB,
/// block cache and the dispatch loop. Handlers are static methods taking (Core, Instr*) — see
/// ENGINE-NOTES.md. Not thread-safe: one Core per virtual processor.
/// </summary>
internal sealed unsafe partial class Core : IDisposable
{
    /// <summary>Architectural state; fixed address for the lifetime of the core.</summary>
    public readonly CpuState* State;
    /// <summary>Software TLB (<see cref="SoftTlb.Entries"/> entries).</summary>
    public readonly TlbEntry* Tlb;
    /// <summary>Effective segment bases used for address formation (Iced order ES..GS); 0 for ES/CS/SS/DS in 64-bit mode.</summary>
    public readonly ulong* SegBase;
    /// <summary>Guest-physical memory.</summary>
    public IGuestPageSource Pages;
    /// <summary>Event (exception / exit) raised by the last instruction that returned <see cref="ExecStatus.Event"/>.</summary>
    public PendingEvent Event;
    /// <summary>Code-segment bitness (16, 32, 64), derived from CS and EFER.LMA by <see cref="RefreshMode"/>.</summary>
    public int Bitness;
    /// <summary>Stack address size in bytes (2, 4, 8).</summary>
    public int StackSize;
    /// <summary>Mask applied to linear addresses (32 bits outside long mode).</summary>
    public ulong LinearMask;
    /// <summary>Set by a write that hit a frame holding cached code: the current block must end.</summary>
    public int StopBlock;
    /// <summary>Exit policy: RDTSC causes a VM exit instead of executing.</summary>
    public bool RdtscExiting;
    /// <summary>Exit policy: LGDT/LIDT/SGDT/SIDT cause a VM exit (secondary control "descriptor-table exiting").</summary>
    public bool DescriptorTableExiting;
    /// <summary>Exit policy: I/O instructions; null = every port exits (see <see cref="IoExits"/>).</summary>
    public Func<ushort, int, bool>? IoExitFilter;
    /// <summary>Exit policy: RDMSR/WRMSR (msr, isWrite); null = every MSR access exits.</summary>
    public Func<uint, bool, bool>? MsrExitFilter;

    private Instr* _blockFirst;

    /// <summary>Creates a core over <paramref name="pages"/> in the reset state of a flat 64-bit segment set.</summary>
    public Core(IGuestPageSource pages)
    {
        Pages = pages;
        State = (CpuState*)NativeMemory.AlignedAlloc((nuint)sizeof(CpuState), 64);
        NativeMemory.Clear(State, (nuint)sizeof(CpuState));
        SegBase = (ulong*)NativeMemory.AlignedAlloc(8 * sizeof(ulong), 64);
        NativeMemory.Clear(SegBase, 8 * sizeof(ulong));
        Tlb = SoftTlb.Allocate();
        State->Rflags = RflagsBits.Reserved1;
        State->Mxcsr = 0x1F80;
        State->Fpu.Reset();   // x87 power-up state (SDM Vol. 1 §8.1.9 via FpuState)
        State->Cr0 = 0x10; // ET (SDM Vol. 3A table 10-1, power-up state)
        State->Dr6 = 0xFFFF_0FF0;
        State->Dr7 = 0x400;
        State->Pat = 0x0007_0406_0007_0406;
        State->TscMultiplier = 1UL << 48;
        InitBlockCache();
        RefreshMode();
    }

    /// <summary>The state by reference.</summary>
    public ref CpuState S
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => ref *State;
    }

    /// <summary>
    /// Recomputes the derived mode fields (bitness, stack size, effective segment bases) from CS, SS,
    /// EFER and CR0. Call after changing any of them. Flushes the TLB (and the linear block lookup that depends on it)
    /// only when the <see cref="TranslationContext"/> its entries were filled under changed: a segment load at the same
    /// CPL, a WRMSR to FS.base or a far jump within one privilege level keeps the cached translations.
    /// </summary>
    public void RefreshMode()
    {
        RefreshDerivedMode();
        TranslationContext now = CurrentTranslationContext;
        TlbFillLog* log = SoftTlb.Log(Tlb);
        if (log->ContextValid && log->Context == now) return;
        SoftTlb.Flush(Tlb);
        FlushFastBlockLookup();
        log->Context = now;
        log->ContextValid = true;
    }

    /// <summary>What the software TLB's entries depend on besides the paging structures (see <see cref="TranslationContext"/>).</summary>
    public TranslationContext CurrentTranslationContext
    {
        get
        {
            ref CpuState s = ref S;
            return new TranslationContext(s.Cr0 & (ControlBits.Cr0Pe | ControlBits.Cr0Wp | ControlBits.Cr0Cd | ControlBits.Cr0Pg), s.Cr3,
                s.Cr4 & ControlBits.Cr4PagingBits, s.Efer & (ControlBits.EferLma | ControlBits.EferNxe), Cpl,
                (s.Cr4 & ControlBits.Cr4Smap) != 0 && (s.Rflags & RflagsBits.AC) != 0);
        }
    }

    /// <summary>
    /// VM entry without "enable VPID" (the emulator does not offer it): SDM Vol. 3C §28.3.3.1 — the entry invalidates the
    /// linear and combined mappings of VPID 0000H, so every software-TLB entry goes. The flush touches only the entries
    /// filled since the last one (<see cref="TlbFillLog"/>). The block lookup by linear address needs no clearing here:
    /// <see cref="BeginRun"/> starts a new epoch, and a block of an older epoch is found again through the TLB only.
    /// </summary>
    public void InvalidateLinearMappings()
    {
        SoftTlb.Flush(Tlb);
        TlbFillLog* log = SoftTlb.Log(Tlb);
        log->Context = CurrentTranslationContext;
        log->ContextValid = true;
    }

    /// <summary>The bitness, stack size, linear mask and effective segment bases from CS, SS, EFER and CR0 (no TLB work).</summary>
    public void RefreshDerivedMode()
    {
        ref CpuState s = ref S;
        bool lma = (s.Efer & (1UL << 10)) != 0;
        bool csL = (s.Cs.AccessRights & (1u << 13)) != 0;
        bool csD = (s.Cs.AccessRights & (1u << 14)) != 0;
        // SDM Vol. 3A §5.2.1: 64-bit mode when IA32_EFER.LMA = 1 and CS.L = 1.
        Bitness = lma && csL ? 64 : csD ? 32 : 16;
        bool ssB = (s.Ss.AccessRights & (1u << 14)) != 0;
        StackSize = Bitness == 64 ? 8 : ssB ? 4 : 2;
        LinearMask = Bitness == 64 ? ulong.MaxValue : 0xFFFF_FFFFUL;
        for (int i = 0; i < 6; i++)
        {
            // SDM Vol. 3A §3.4.4: in 64-bit mode the bases of ES, CS, SS, DS are treated as 0.
            SegBase[i] = Bitness == 64 && i < 4 ? 0 : s.Segment(i).Base;
        }
    }

    // ---------------------------------------------------------------- registers

    /// <summary>Reads the register in operand slot <paramref name="slot"/> at <paramref name="size"/> bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong GetReg(int slot, int size)
    {
        ref CpuState s = ref S;
        switch (size)
        {
            case 8: return s.Gpr[slot];
            case 4: return (uint)s.Gpr[slot];
            case 2: return (ushort)s.Gpr[slot];
            default:
                return slot < Instr.Gpr8High ? (byte)s.Gpr[slot] : (byte)(s.Gpr[slot - Instr.Gpr8High] >> 8);
        }
    }

    /// <summary>Writes a register with x86 partial-register rules (32-bit writes zero the upper half).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void SetReg(int slot, int size, ulong value)
    {
        ref CpuState s = ref S;
        switch (size)
        {
            case 8: s.Gpr[slot] = value; break;
            case 4: s.Gpr[slot] = (uint)value; break;
            case 2: s.Gpr[slot] = (s.Gpr[slot] & ~0xFFFFUL) | (ushort)value; break;
            default:
                if (slot < Instr.Gpr8High)
                {
                    s.Gpr[slot] = (s.Gpr[slot] & ~0xFFUL) | (byte)value;
                }
                else
                {
                    int r = slot - Instr.Gpr8High;
                    s.Gpr[r] = (s.Gpr[r] & ~0xFF00UL) | ((ulong)(byte)value << 8);
                }
                break;
        }
    }

    // ---------------------------------------------------------------- addresses

    /// <summary>Effective address (offset within the segment) of <paramref name="i"/>'s memory operand.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong EffectiveAddress(Instr* i)
    {
        ref CpuState s = ref S;
        ulong a = (ulong)i->Disp;
        if (i->MemBase != Instr.NoRegister) a += s.Gpr[i->MemBase];
        if (i->MemIndex != Instr.NoRegister) a += s.Gpr[i->MemIndex] << i->MemScaleShift;
        return i->AddrSize switch { 8 => a, 4 => (uint)a, _ => (ushort)a };
    }

    /// <summary>Linear address of <paramref name="i"/>'s memory operand.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong LinearAddress(Instr* i) => (SegBase[i->MemSeg] + EffectiveAddress(i)) & LinearMask;

    /// <summary>Linear address of offset <paramref name="offset"/> in segment <paramref name="seg"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong Linear(int seg, ulong offset) => (SegBase[seg] + offset) & LinearMask;

    // ---------------------------------------------------------------- operands

    /// <summary>Reads operand 0 (register or memory) at <see cref="Instr.OpSize"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool ReadOp0(Instr* i, out ulong value)
    {
        if (i->Op0 != Instr.MemoryOperand)
        {
            value = GetReg(i->Op0, i->OpSize);
            return true;
        }
        return Read(LinearAddress(i), i->OpSize, out value);
    }

    /// <summary>Writes operand 0 (register or memory) at <see cref="Instr.OpSize"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool WriteOp0(Instr* i, ulong value)
    {
        if (i->Op0 != Instr.MemoryOperand)
        {
            SetReg(i->Op0, i->OpSize, value);
            return true;
        }
        return Write(LinearAddress(i), i->OpSize, value);
    }

    /// <summary>Reads operand 1 (register or memory) at <see cref="Instr.Op1Size"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool ReadOp1(Instr* i, out ulong value)
    {
        if (i->Op1 != Instr.MemoryOperand)
        {
            value = GetReg(i->Op1, i->Op1Size);
            return true;
        }
        return Read(LinearAddress(i), i->Op1Size, out value);
    }

    // ---------------------------------------------------------------- memory

    /// <summary>Reads <paramref name="size"/> (1, 2, 4, 8) bytes at linear <paramref name="lin"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Read(ulong lin, int size, out ulong value)
    {
        TlbEntry* e = Tlb + ((lin >> 12) & (SoftTlb.Entries - 1));
        if (e->ReadTag == (lin & ~0xFFFUL) && (lin & 0xFFF) <= (ulong)(4096 - size))
        {
            byte* p = (byte*)(e->Addend + (long)lin);
            value = size switch { 1 => *p, 2 => *(ushort*)p, 4 => *(uint*)p, _ => *(ulong*)p };
            return true;
        }
        return ReadSlow(lin, size, out value);
    }

    /// <summary>Writes <paramref name="size"/> (1, 2, 4, 8) bytes at linear <paramref name="lin"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Write(ulong lin, int size, ulong value)
    {
        TlbEntry* e = Tlb + ((lin >> 12) & (SoftTlb.Entries - 1));
        if (e->WriteTag == (lin & ~0xFFFUL) && (lin & 0xFFF) <= (ulong)(4096 - size))
        {
            byte* p = (byte*)(e->Addend + (long)lin);
            switch (size)
            {
                case 1: *p = (byte)value; break;
                case 2: *(ushort*)p = (ushort)value; break;
                case 4: *(uint*)p = (uint)value; break;
                default: *(ulong*)p = value; break;
            }
            return true;
        }
        return WriteSlow(lin, size, value);
    }

    /// <summary>Reads 16 bytes (SSE) at linear <paramref name="lin"/>.</summary>
    public bool Read128(ulong lin, out ulong low, out ulong high)
    {
        high = 0;
        return Read(lin, 8, out low) && Read(lin + 8 & LinearMask, 8, out high);
    }

    /// <summary>Writes 16 bytes (SSE) at linear <paramref name="lin"/>; nothing is written if either half faults.</summary>
    public bool Write128(ulong lin, ulong low, ulong high)
    {
        if (!Probe(lin, 8, MemoryAccess.Write) || !Probe((lin + 8) & LinearMask, 8, MemoryAccess.Write))
        {
            return false;
        }
        return Write(lin, 8, low) && Write((lin + 8) & LinearMask, 8, high);
    }

    /// <summary>Checks that <paramref name="size"/> bytes at <paramref name="lin"/> are accessible (raises the fault if not).</summary>
    public bool Probe(ulong lin, int size, MemoryAccess access)
    {
        return HostPointer(lin, access) != null
            && (((lin & 0xFFF) + (ulong)size <= 4096) || HostPointer((lin + (ulong)size - 1) & LinearMask, access) != null);
    }

    private bool ReadSlow(ulong lin, int size, out ulong value)
    {
        value = 0;
        if (DataBreakpointsArmed) NoteDataAccess(lin, size, write: false);
        if ((lin & 0xFFF) + (ulong)size <= 4096)
        {
            byte* p = HostPointer(lin, MemoryAccess.Read);
            if (p == null) return false;
            if (Locked) { value = LockedRead(lin, size, p); return true; } // Core.Locked.cs
            value = size switch { 1 => *p, 2 => *(ushort*)p, 4 => *(uint*)p, _ => *(ulong*)p };
            return true;
        }
        // Page-crossing access: translate both pages before touching anything.
        ulong second = (lin + (ulong)size - 1) & LinearMask & ~0xFFFUL;
        byte* p1 = HostPointer(lin, MemoryAccess.Read);
        if (p1 == null) return false;
        byte* p2 = HostPointer(second, MemoryAccess.Read);
        if (p2 == null) return false;
        int first = 4096 - (int)(lin & 0xFFF);
        for (int k = 0; k < size; k++)
        {
            ulong b = k < first ? p1[k] : p2[k - first];
            value |= b << (8 * k);
        }
        return true;
    }

    private bool WriteSlow(ulong lin, int size, ulong value)
    {
        if (DataBreakpointsArmed) NoteDataAccess(lin, size, write: true);
        if ((lin & 0xFFF) + (ulong)size <= 4096)
        {
            byte* p = HostPointer(lin, MemoryAccess.Write);
            if (p == null) return false;
            if (Locked) return LockedWrite(lin, size, p, value); // Core.Locked.cs
            switch (size)
            {
                case 1: *p = (byte)value; break;
                case 2: *(ushort*)p = (ushort)value; break;
                case 4: *(uint*)p = (uint)value; break;
                default: *(ulong*)p = value; break;
            }
            return true;
        }
        ulong second = (lin + (ulong)size - 1) & LinearMask & ~0xFFFUL;
        byte* q1 = HostPointer(lin, MemoryAccess.Write);
        if (q1 == null) return false;
        byte* q2 = HostPointer(second, MemoryAccess.Write);
        if (q2 == null) return false;
        int firstPart = 4096 - (int)(lin & 0xFFF);
        for (int k = 0; k < size; k++)
        {
            byte b = (byte)(value >> (8 * k));
            if (k < firstPart) q1[k] = b; else q2[k - firstPart] = b;
        }
        return true;
    }

    /// <summary>
    /// Slow path: translates <paramref name="lin"/> (guest paging, then the page source / EPT), refills
    /// the TLB entry, handles self-modifying code, and returns the host address of the byte, or null
    /// with <see cref="Event"/> set to the fault.
    /// </summary>
    public byte* HostPointer(ulong lin, MemoryAccess access)
    {
        ulong page = lin & ~0xFFFUL;
        if (!TranslateLinear(lin, access, out ulong gpa))
        {
            return null;
        }
        byte* host = Pages.GetHostPage(gpa, access, out ulong violation, out bool misconfig);
        if (host == null)
        {
            RaiseEptFault(lin, gpa, access, violation, misconfig);
            return null;
        }
        ulong physPage = gpa & ~0xFFFUL;
        if (access == MemoryAccess.Write && IsCodeFrame(physPage))
        {
            InvalidateCodeFrame(physPage);
            StopBlock = 1;
        }
        if (ImplicitSupervisor) return host + (lin & 0xFFF); // checked with supervisor rights: never cached for the guest's own accesses
        if (DataBreakpointsArmed && access != MemoryAccess.Execute) return host + (lin & 0xFFF); // every data access is checked (Core.Debug.cs)
        int index = (int)((lin >> 12) & (SoftTlb.Entries - 1));
        TlbEntry* e = Tlb + index;
        if (SoftTlb.IsEmpty(e))
        {
            SoftTlb.NoteFilled(Tlb, index); // filled below (a write to a code frame may leave it empty: listed anyway)
        }
        else if (e->PhysicalPage != physPage || (e->ReadTag != page && e->WriteTag != page && e->FetchTag != page))
        {
            e->ReadTag = SoftTlb.Invalid;
            e->WriteTag = SoftTlb.Invalid;
            e->FetchTag = SoftTlb.Invalid;
        }
        e->PhysicalPage = physPage;
        e->Addend = (long)host - (long)page;
        switch (access)
        {
            case MemoryAccess.Read: e->ReadTag = page; break;
            case MemoryAccess.Write:
                // A write permission is never cached for a frame that holds decoded code, so
                // every write to it comes here and invalidates the blocks (self-modifying code).
                if (!IsCodeFrame(physPage)) e->WriteTag = page;
                break;
            default: e->FetchTag = page; break;
        }
        return host + (lin & 0xFFF);
    }

    /// <summary>Guest linear to guest-physical translation (guest paging). Paging off: identity.</summary>
    private bool TranslateLinear(ulong lin, MemoryAccess access, out ulong gpa)
    {
        if ((S.Cr0 & (1UL << 31)) == 0)
        {
            gpa = lin & LinearMask;
            return true;
        }
        return PageWalk(lin, access, out gpa);
    }

    private void RaiseEptFault(ulong lin, ulong gpa, MemoryAccess access, ulong violation, bool misconfig)
    {
        Event = default;
        Event.Kind = EventKind.VmExit;
        Event.GuestPhysical = gpa;
        Event.GuestLinear = lin;
        if (misconfig)
        {
            Event.ExitReason = BasicExitReason.EptMisconfiguration;
        }
        else
        {
            Event.ExitReason = BasicExitReason.EptViolation;
            // SDM table 28-7: bit 7 guest-linear address valid, bit 8 the access was to the translated
            // linear address (not a paging-structure entry).
            Event.Qualification = (violation & ~7UL) | ((ulong)access & 7) | (1UL << 7) | (1UL << 8);
        }
    }

    // ---------------------------------------------------------------- stack

    /// <summary>Pushes <paramref name="size"/> bytes (SDM Vol. 1 §6.2.2); RSP changes only on success.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Push(ulong value, int size)
    {
        ref CpuState s = ref S;
        ulong rsp = s.Gpr[4] - (ulong)size;
        rsp = StackSize switch { 8 => rsp, 4 => (uint)rsp, _ => (ushort)rsp };
        if (!Write(Linear(2, rsp), size, value)) return false;
        SetStackPointer(rsp);
        return true;
    }

    /// <summary>Pops <paramref name="size"/> bytes; RSP changes only on success.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Pop(int size, out ulong value)
    {
        ref CpuState s = ref S;
        ulong rsp = StackOffset(0);
        if (!Read(Linear(2, rsp), size, out value)) return false;
        SetStackPointer(rsp + (ulong)size);
        return true;
    }

    /// <summary>RSP + <paramref name="delta"/> truncated to the stack address size.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong StackOffset(long delta)
    {
        ulong rsp = S.Gpr[4] + (ulong)delta;
        return StackSize switch { 8 => rsp, 4 => (uint)rsp, _ => (ushort)rsp };
    }

    /// <summary>Writes RSP/ESP/SP according to the stack address size.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void SetStackPointer(ulong value)
    {
        ref CpuState s = ref S;
        s.Gpr[4] = StackSize switch
        {
            8 => value,
            4 => (s.Gpr[4] & ~0xFFFF_FFFFUL) | (uint)value,
            _ => (s.Gpr[4] & ~0xFFFFUL) | (ushort)value,
        };
    }

    // ---------------------------------------------------------------- events

    /// <summary>Raises exception <paramref name="vector"/> without an error code; returns <see cref="ExecStatus.Event"/>.</summary>
    public int RaiseException(int vector)
    {
        Event = default;
        Event.Kind = EventKind.Exception;
        Event.Vector = vector;
        return ExecStatus.Event;
    }

    /// <summary>Raises exception <paramref name="vector"/> with <paramref name="errorCode"/>.</summary>
    public int RaiseException(int vector, uint errorCode)
    {
        Event = default;
        Event.Kind = EventKind.Exception;
        Event.Vector = vector;
        Event.HasErrorCode = true;
        Event.ErrorCode = errorCode;
        return ExecStatus.Event;
    }

    /// <summary>Raises #UD (the default handler for everything not implemented).</summary>
    public int RaiseUD() => RaiseException(ExceptionVector.UD);

    /// <summary>Raises #GP(0).</summary>
    public int RaiseGP0() => RaiseException(ExceptionVector.GP, 0);

    /// <summary>Instruction-caused VM exit (RIP stays at the instruction; the hypervisor advances it).</summary>
    public int RaiseExit(Instr* i, uint reason, ulong qualification)
    {
        Event = default;
        Event.Kind = EventKind.VmExit;
        Event.ExitReason = reason;
        Event.Qualification = qualification;
        Event.InstructionLength = i->Length;
        return ExecStatus.Event;
    }

    /// <summary>Whether an I/O access to <paramref name="port"/> of <paramref name="size"/> bytes exits.</summary>
    public bool IoExits(ushort port, int size) => IoExitFilter == null || IoExitFilter(port, size);

    /// <summary>Whether RDMSR (<paramref name="write"/> false) / WRMSR of <paramref name="msr"/> exits.</summary>
    public bool MsrExits(uint msr, bool write) => MsrExitFilter == null || MsrExitFilter(msr, write);

    /// <summary>Instructions retired up to (not including) <paramref name="i"/>, valid inside a handler.</summary>
    public ulong RetiredBefore(Instr* i) => S.InstructionsRetired + (ulong)(i - _blockFirst);

    /// <inheritdoc/>
    public void Dispose()
    {
        Translator?.Dispose();
        Translator = null;
        NativeMemory.AlignedFree(State);
        NativeMemory.AlignedFree(SegBase);
        NativeMemory.AlignedFree(Tlb);
        GC.SuppressFinalize(this);
    }
}
