using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Fpu;

/// <summary>
/// x87 instructions. Everything that computes (loads, stores, arithmetic, compares, constants, transcendental
/// functions, FXCH, FFREE, FCMOVcc, FINCSTP ...) goes through <see cref="Execute"/> and the form's host thunk
/// (<see cref="X87Thunks"/>); the control instructions that only move the environment are in C# below
/// (SDM Vol. 1 §8.1 and each instruction's page in Vol. 2).
/// </summary>
internal static unsafe class X87
{
    /// <summary>FSW exception flags IE DE ZE OE UE PE (§8.1.3.1).</summary>
    private const ushort ExceptionFlags = 0x3F;
    /// <summary>FSW.SF, the stack fault flag (sticky like the exception flags).</summary>
    private const ushort StackFault = 0x40;
    /// <summary>FSW.ES and FSW.B (B mirrors ES on every processor since the 80387).</summary>
    private const ushort Summary = 0x8080;

    /// <summary>Every computing x87 form: see the class remarks.</summary>
    public static int Execute(Core c, Instr* i)
    {
        int st = FpuAccess.CheckX87(c, waiting: true);
        if (st != ExecStatus.Continue)
            return st;
        if (!X87Thunks.Available)
            return c.RaiseUD();
        int fop = FpuAccess.OpcodeAndModRm(c, i);
        if (fop < 0)
            return ExecStatus.Event;
        X87FormFlags form = X87Thunks.Flags[i->Code];
        int index = X87Thunks.FirstIndex[i->Code];
        if ((form & X87FormFlags.StackRegister) != 0)
            index += fop & 7;

        ref FpuState f = ref c.S.Fpu;
        X87Frame frame;
        ushort fsw = f.Fsw;
        int size = i->MemSize;
        ulong lin = 0;
        if ((form & (X87FormFlags.MemoryRead | X87FormFlags.MemoryWrite)) != 0)
        {
            lin = c.LinearAddress(i);
            if ((form & X87FormFlags.MemoryRead) != 0 && !FpuMemory.Read(c, lin, new Span<byte>(frame.Memory, size)))
                return ExecStatus.Event;
            if ((form & X87FormFlags.MemoryWrite) != 0 && !FpuMemory.ProbeWrite(c, lin, size))
                return ExecStatus.Event;
        }
        if ((form & X87FormFlags.MemoryRead) == 0)
            new Span<byte>(frame.Memory, 16).Clear();
        ulong guestFlags = (form & X87FormFlags.ReadsFlags) != 0 ? c.S.GetRflags() & RflagsBits.Arith : 0;
        Run(ref f, &frame, index, fsw, guestFlags);

        ushort newFsw = *(ushort*)(frame.Guest + 4);
        bool stored = true;
        if ((form & X87FormFlags.MemoryWrite) != 0 && (newFsw & ExceptionFlags & ~f.Fcw) != 0)
        {
            // An unmasked exception may suppress the store (SDM Vol. 1 §8.5.1.1 / §4.9.2): run again over a
            // differently filled buffer — the host wrote the operand only if both runs produce the same bytes.
            X87Frame again;
            new Span<byte>(again.Memory, 16).Fill(0xFF);
            Run(ref f, &again, index, fsw, guestFlags);
            stored = new ReadOnlySpan<byte>(frame.Memory, size).SequenceEqual(new ReadOnlySpan<byte>(again.Memory, size));
        }
        if ((form & X87FormFlags.MemoryWrite) != 0 && stored && !FpuMemory.Write(c, lin, new ReadOnlySpan<byte>(frame.Memory, size)))
            return ExecStatus.Event;

        FromImage(ref f, frame.Guest, fsw);
        // FIP, FCS, FOP: every non-control instruction; FDP, FDS: those with a memory operand (§8.1.8, §8.1.9).
        f.Fip = i->Ip;
        f.Fcs = c.S.Cs.Selector;
        f.Fop = (ushort)(fop & 0x7FF);
        if ((form & (X87FormFlags.MemoryRead | X87FormFlags.MemoryWrite)) != 0)
        {
            f.Fdp = c.EffectiveAddress(i);
            f.Fds = c.S.Segment(i->MemSeg).Selector;
        }
        if ((form & X87FormFlags.WritesFlags) != 0)
        {
            // FCOMI/FUCOMI: ZF, PF, CF from the compare; OF, SF, AF cleared (Vol. 2 FCOMI "Flags Affected").
            LazyFlags.SetEager(ref c.S, RflagsBits.Arith, frame.Rflags & (RflagsBits.ZF | RflagsBits.PF | RflagsBits.CF));
        }
        return ExecStatus.Continue;
    }

    private static void Run(ref FpuState f, X87Frame* frame, int index, ushort fsw, ulong flags)
    {
        // The image handed to the host has no sticky flags, so nothing is pending when the instruction starts.
        ToImage(ref f, frame->Guest, (ushort)(fsw & ~(ExceptionFlags | StackFault | Summary)));
        frame->Rflags = flags | 2;
        X87Thunks.Entries[index](frame);
    }

    /// <summary>Writes the 108-byte 32-bit protected-mode FRSTOR image of <paramref name="f"/> with status word <paramref name="fsw"/>.</summary>
    private static void ToImage(ref FpuState f, byte* img, ushort fsw)
    {
        new Span<byte>(img, 108).Clear();
        *(ushort*)img = f.Fcw;
        *(ushort*)(img + 4) = fsw;
        *(ushort*)(img + 8) = (ushort)f.FullTagWord();
        int top = (fsw >> 11) & 7;
        for (int k = 0; k < 8; k++)
        {
            fixed (byte* r = &f.Register((top + k) & 7))
            {
                Buffer.MemoryCopy(r, img + 28 + 10 * k, 10, 10);
            }
        }
    }

    /// <summary>Takes the result image back: registers, tags, TOP, C0-C3; exception flags merged as sticky bits, ES/B recomputed.</summary>
    private static void FromImage(ref FpuState f, byte* img, ushort oldFsw)
    {
        ushort fsw = *(ushort*)(img + 4);
        int top = (fsw >> 11) & 7;
        for (int k = 0; k < 8; k++)
        {
            int p = (top + k) & 7;
            fixed (byte* r = &f.Register(p))
            {
                Buffer.MemoryCopy(img + 28 + 10 * k, r, 10, 10);
                *(ushort*)(r + 10) = 0;
                *(uint*)(r + 12) = 0;
            }
        }
        f.Ftw = FpuState.Abridge(*(ushort*)(img + 8));
        f.Fsw = WithSummary((ushort)((fsw & ~Summary) | (oldFsw & (ExceptionFlags | StackFault))), f.Fcw);
    }

    /// <summary>FSW with ES and B set exactly when an exception flag is set whose mask bit is clear (§8.1.3.? "Error summary").</summary>
    public static ushort WithSummary(ushort fsw, ushort fcw) =>
        (ushort)((fsw & ~Summary) | ((fsw & ExceptionFlags & ~fcw) != 0 ? Summary : 0));

    // ------------------------------------------------------------------ control instructions

    /// <summary>FNSTSW AX / FSTSW AX (Sub = 1: waiting form).</summary>
    public static int StoreStatusAx(Core c, Instr* i)
    {
        int st = FpuAccess.CheckX87(c, waiting: i->Sub != 0);
        if (st != ExecStatus.Continue)
            return st;
        c.SetReg(0, 2, c.S.Fpu.Fsw);
        return ExecStatus.Continue;
    }

    /// <summary>FNSTSW m2byte / FNSTCW m2byte and the waiting forms (Sub bit 0: waiting, bit 1: control word).</summary>
    public static int StoreWord(Core c, Instr* i)
    {
        int st = FpuAccess.CheckX87(c, waiting: (i->Sub & 1) != 0);
        if (st != ExecStatus.Continue)
            return st;
        ref FpuState f = ref c.S.Fpu;
        return c.Write(c.LinearAddress(i), 2, (i->Sub & 2) != 0 ? f.Fcw : f.Fsw) ? ExecStatus.Continue : ExecStatus.Event;
    }

    /// <summary>FLDCW m2byte: a newly unmasked pending exception is reported at the next waiting instruction (Vol. 2 FLDCW).</summary>
    public static int LoadControlWord(Core c, Instr* i)
    {
        int st = FpuAccess.CheckX87(c, waiting: true);
        if (st != ExecStatus.Continue)
            return st;
        if (!c.Read(c.LinearAddress(i), 2, out ulong v))
            return ExecStatus.Event;
        ref FpuState f = ref c.S.Fpu;
        // Bits 6, 13-15 are reserved; bit 6 reads as 1 on every processor since the 80387 (§8.1.5, figure 8-6).
        f.Fcw = (ushort)((v & 0x1F3F) | 0x40);
        f.Fsw = WithSummary(f.Fsw, f.Fcw);
        return ExecStatus.Continue;
    }

    /// <summary>FNINIT / FINIT (Sub = 1: waiting form): the FNINIT state (§8.1, Vol. 3A table 9-1 "FINIT" column).</summary>
    public static int Initialize(Core c, Instr* i)
    {
        int st = FpuAccess.CheckX87(c, waiting: i->Sub != 0);
        if (st != ExecStatus.Continue)
            return st;
        c.S.Fpu.Initialize();
        return ExecStatus.Continue;
    }

    /// <summary>FNCLEX / FCLEX: clears PE UE OE ZE DE IE, SF, ES and B (Vol. 2 FCLEX).</summary>
    public static int ClearExceptions(Core c, Instr* i)
    {
        int st = FpuAccess.CheckX87(c, waiting: i->Sub != 0);
        if (st != ExecStatus.Continue)
            return st;
        c.S.Fpu.Fsw &= 0x7F00;
        return ExecStatus.Continue;
    }

    /// <summary>FNOP and the 8087/80287 instructions an 80387 and later execute as no-ops (FENI, FDISI, FSETPM; Vol. 1 §8.? / Vol. 2 FNOP).</summary>
    public static int NoOperation(Core c, Instr* i)
    {
        int st = FpuAccess.CheckX87(c, waiting: i->Sub != 0);
        if (st != ExecStatus.Continue)
            return st;
        if (i->Sub == 2)
        {
            // FNOP is an ordinary (non-control) instruction: it updates FIP, FCS and FOP.
            int fop = FpuAccess.OpcodeAndModRm(c, i);
            if (fop < 0)
                return ExecStatus.Event;
            ref FpuState f = ref c.S.Fpu;
            f.Fip = i->Ip;
            f.Fcs = c.S.Cs.Selector;
            f.Fop = (ushort)(fop & 0x7FF);
        }
        return ExecStatus.Continue;
    }

    /// <summary>
    /// WAIT/FWAIT: #NM only when CR0.MP and CR0.TS are both 1 (Vol. 3A §2.5 table 2-2); then a pending unmasked
    /// exception raises #MF (CR0.NE = 1).
    /// </summary>
    public static int Wait(Core c, Instr* i)
    {
        ref CpuState s = ref c.S;
        if ((s.Cr0 & (FpuAccess.Cr0Mp | FpuAccess.Cr0Ts)) == (FpuAccess.Cr0Mp | FpuAccess.Cr0Ts))
            return c.RaiseException(ExceptionVector.NM);
        FpuAccess.EnsureReset(ref s);
        if ((s.Fpu.Fsw & FpuAccess.FswEs) != 0 && (s.Cr0 & FpuAccess.Cr0Ne) != 0)
            return c.RaiseException(ExceptionVector.MF);
        return ExecStatus.Continue;
    }
}
