using System.Runtime.CompilerServices;
using Iced.Intel;
using VmmKit.Vmx.Emulator.Handlers;

namespace VmmKit.Vmx.Emulator.Engine;

/// <summary>
/// Debug exceptions (SDM Vol. 3A chapter 18): instruction, data and I/O breakpoints of DR0-DR3/DR7, single-step
/// (RFLAGS.TF) and RF. While any of them is armed the dispatch loop runs one instruction (one REP iteration) at a time
/// through <see cref="ExecuteDebug"/>; otherwise the only cost is one test per block.
/// </summary>
internal sealed unsafe partial class Core
{
    /// <summary>DR6.BS: the #DB was a single-step trap.</summary>
    private const ulong Dr6Bs = 1UL << 14;

    /// <summary>Whether a data breakpoint is enabled: data accesses then bypass the software TLB and are checked.</summary>
    public bool DataBreakpointsArmed;

    /// <summary>
    /// The VMCS "pending debug exceptions" field (SDM Vol. 3C §25.4.2): B0-B3 and BS of a trap-class #DB that belongs to
    /// an instruction that exited to the hypervisor (an I/O breakpoint of an OUT, single-step over a CPUID). The
    /// hypervisor completes the instruction; the #DB is delivered when the guest runs again, before its next instruction.
    /// </summary>
    public ulong PendingDebugExceptions;

    /// <summary>B0-B3 matched by the data accesses of the instruction being stepped.</summary>
    private ulong _dataHits;

    /// <summary>Trap-class #DB conditions held back by a MOV SS / POP SS shadow until one more instruction (SDM §6.8.3).</summary>
    private ulong _deferredDebug;

    /// <summary>Whether single-step or any breakpoint of DR7 (L0-L3, G0-G3) is enabled.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool DebugArmed(ref CpuState s) => ((s.Rflags & RflagsBits.TF) | (s.Dr7 & 0xFF)) != 0;

    private static bool Enabled(ulong dr7, int n) => ((dr7 >> (2 * n)) & 3) != 0;

    private static int RwBits(ulong dr7, int n) => (int)(dr7 >> (16 + 4 * n)) & 3;

    /// <summary>Bytes covered by breakpoint <paramref name="n"/> (LEN: 00 1, 01 2, 11 4, 10 8; SDM §18.2.5).</summary>
    private static ulong LengthOf(ulong dr7, int n) => ((dr7 >> (18 + 4 * n)) & 3) switch { 0 => 1, 1 => 2, 2 => 8, _ => 4 };

    /// <summary>Recomputes <see cref="DataBreakpointsArmed"/> after DR0-DR3, DR7 or CR4.DE changed (MOV DR, VM entry).</summary>
    public void RefreshBreakpoints()
    {
        ulong dr7 = S.Dr7;
        bool armed = false;
        for (int n = 0; n < 4; n++)
        {
            if (Enabled(dr7, n) && RwBits(dr7, n) is 1 or 3) armed = true;
        }
        // Translations cached before arming would let data accesses skip the check.
        if (armed && !DataBreakpointsArmed) FlushTlb();
        DataBreakpointsArmed = armed;
    }

    /// <summary>Checks a data access against the enabled data breakpoints (write-only: RW = 01; read/write: RW = 11).</summary>
    public void NoteDataAccess(ulong lin, int size, bool write)
    {
        if (ImplicitSupervisor) return; // descriptor-table and TSS accesses of the processor itself
        ulong dr7 = S.Dr7;
        for (int n = 0; n < 4; n++)
        {
            int rw = RwBits(dr7, n);
            if (!Enabled(dr7, n) || !(rw == 3 || (rw == 1 && write))) continue;
            ulong len = LengthOf(dr7, n);
            ulong start = S.Dr[n] & ~(len - 1);
            if (lin < start + len && start < lin + (ulong)size) _dataHits |= 1UL << n;
        }
    }

    /// <summary>B0-B3 for an instruction fetch at <paramref name="lin"/>: every RW = 00 breakpoint at that address.</summary>
    private ulong InstructionBreakpoints(ulong lin, out bool enabledHit)
    {
        ulong dr7 = S.Dr7;
        ulong hits = 0;
        enabledHit = false;
        for (int n = 0; n < 4; n++)
        {
            if (RwBits(dr7, n) != 0 || S.Dr[n] != lin) continue;
            hits |= 1UL << n;
            if (Enabled(dr7, n)) enabledHit = true;
        }
        return hits;
    }

    /// <summary>B0-B3 of the I/O breakpoints (RW = 10, CR4.DE = 1) an access to <paramref name="port"/> matches.</summary>
    private ulong IoBreakpoints(ushort port, int size)
    {
        if ((S.Cr4 & ControlBits.Cr4De) == 0) return 0;
        ulong dr7 = S.Dr7;
        ulong hits = 0;
        for (int n = 0; n < 4; n++)
        {
            if (!Enabled(dr7, n) || RwBits(dr7, n) != 2) continue;
            ulong len = LengthOf(dr7, n);
            ulong start = S.Dr[n] & 0xFFFF & ~(len - 1);
            if (port < start + len && start < (ulong)port + (ulong)size) hits |= 1UL << n;
        }
        return hits;
    }

    /// <summary>Raises the #DB recorded in <see cref="PendingDebugExceptions"/> (SDM Vol. 3C §28.7.3); false if none.</summary>
    private bool TakePendingDebugException()
    {
        if (PendingDebugExceptions == 0) return false;
        S.Dr6 = (S.Dr6 & ~0xFUL) | (PendingDebugExceptions & (0xFUL | Dr6Bs));
        PendingDebugExceptions = 0;
        RaiseException(ExceptionVector.DB);
        return true;
    }

    /// <summary>
    /// Runs one instruction at a time while debugging is armed. Returns 0 when it no longer is (the caller goes on with
    /// whole blocks), 1 when the budget is used up, 2 with an event in <see cref="Event"/>.
    /// </summary>
    private int ExecuteDebug(ulong end)
    {
        ref CpuState s = ref S;
        while (s.InstructionsRetired < end)
        {
            if ((!DebugArmed(ref s) && _deferredDebug == 0) || ExitRequestPending) return 0;
            ulong flags0 = s.Rflags;
            bool tf = (flags0 & RflagsBits.TF) != 0;

            // Instruction breakpoints are faults taken before the instruction, unless RF is set (SDM §18.3.1.1).
            if ((flags0 & RflagsBits.RF) == 0 && (s.Dr7 & 0xFF) != 0)
            {
                ulong hits = InstructionBreakpoints((SegBase[1] + s.Rip) & LinearMask, out bool enabledHit);
                if (enabledHit)
                {
                    s.Dr6 = (s.Dr6 & ~0xFUL) | hits;
                    RaiseException(ExceptionVector.DB);
                    return 2;
                }
            }

            Block? b = FindBlock();
            if (b == null) return 2;
            Instr* p = b.First;
            Mnemonic m = ((Code)p->Code).Mnemonic();
            bool io = m is Mnemonic.In or Mnemonic.Out or Mnemonic.Insb or Mnemonic.Insw or Mnemonic.Insd
                or Mnemonic.Outsb or Mnemonic.Outsw or Mnemonic.Outsd;
            bool softInt = m is Mnemonic.Int or Mnemonic.Int3 or Mnemonic.Into or Mnemonic.Int1;
            ushort port = 0;
            int ioSize = 0;
            if (io) IoOperands(p, out port, out ioSize);

            // RF is cleared once an instruction completes (IRET may load it again).
            s.Rflags &= ~RflagsBits.RF;
            _dataHits = 0;
            BudgetEnd = s.InstructionsRetired + 1; // a REP string instruction does one iteration
            _blockFirst = p;
            int r = p->Handler(this, p);
            StopBlock = 0;
            if (r == ExecStatus.Continue) { s.Rip = p->Ip + p->Length; s.InstructionsRetired++; }
            else if (r == ExecStatus.Jump) s.InstructionsRetired++;
            else s.Rip = p->Ip;

            if (r == ExecStatus.Event)
            {
                if (Event.Kind == EventKind.VmExit && Event.InstructionLength != 0)
                {
                    // The hypervisor completes the instruction; its trap-class #DB waits in the VMCS field.
                    PendingDebugExceptions = _deferredDebug | (tf ? Dr6Bs : 0) | (io ? IoBreakpoints(port, ioSize) : 0);
                    _deferredDebug = 0;
                }
                else if (Event.Kind == EventKind.Exception)
                {
                    s.Rflags |= flags0 & RflagsBits.RF; // a fault leaves RF as it was
                }
                return 2;
            }

            // Trap-class conditions of the completed instruction or REP iteration (SDM §18.3.1.2-§18.3.1.4).
            ulong bits = _deferredDebug | _dataHits;
            if (tf && !(softInt && (s.Rflags & RflagsBits.TF) == 0)) bits |= Dr6Bs; // INT n/INT3/INTO that delivered: no BS
            if (io) bits |= IoBreakpoints(port, ioSize);
            if (bits == 0) continue;
            if (ShadowBits == 2)
            {
                _deferredDebug = bits; // MOV SS / POP SS: held until after the next instruction
                continue;
            }
            _deferredDebug = 0;
            s.Dr6 = (s.Dr6 & ~0xFUL) | bits;
            RaiseException(ExceptionVector.DB);
            return 2;
        }
        return 1;
    }

    /// <summary>Port and size of an IN/OUT/INS/OUTS (the operands <see cref="SystemInstructions.Io"/> uses).</summary>
    private void IoOperands(Instr* i, out ushort port, out int size)
    {
        bool isIn = (i->Sub & 1) != 0, str = (i->Sub & 2) != 0, imm = (i->Sub & 4) != 0;
        size = str ? i->MemSize : isIn ? i->OpSize : i->Op1Size;
        port = imm ? (ushort)i->Imm : (ushort)S.Gpr[2];
    }
}
