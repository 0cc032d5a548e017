using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Handlers;

/// <summary>
/// Runs a LOCK'ed read-modify-write (and XCHG with a memory operand, locked implicitly) atomically with respect to other
/// processors' host threads sharing guest memory (SDM Vol. 3A §9.1.2.2, software-controlled bus locking).
/// <see cref="BlockDecoder"/> installs <see cref="Run"/> in place of the instruction's handler; the translator never
/// compiles LOCK'ed instructions.
/// </summary>
/// <remarks>
/// A naturally aligned operand of 1, 2, 4 or 8 bytes: the handler runs in the core's locked mode (Core.Locked.cs), its
/// write being a compare-and-swap against the value it read; when the swap fails the registers and flags the handler
/// may have changed are restored and it runs again. Otherwise (a misaligned operand, which may cross a page, or
/// CMPXCHG16B, for which .NET has no 128-bit compare-and-swap) the handler runs under one process-wide lock: atomic
/// against the other locked instructions of that kind, but a plain store or a compare-and-swap by another processor may
/// still interleave, as with a split lock. Faults are those of the plain handler: a fault writes nothing.
/// </remarks>
internal static unsafe class LockedRmw
{
    private static readonly Lock s_unaligned = new();

    /// <summary>The wrapper handler.</summary>
    public static int Run(Core c, Instr* i)
    {
        delegate*<Core, Instr*, int> handler = HandlerTable.Entries[i->Code].Handler;
        int size = i->MemSize;
        ulong lin = OperandAddress(c, i);
        if (size is not (1 or 2 or 4 or 8) || (lin & (ulong)(size - 1)) != 0)
        {
            lock (s_unaligned) return handler(c, i);
        }
        Snapshot saved = default;
        saved.Save(ref c.S);
        while (true)
        {
            c.BeginLocked(lin, size);
            int status = handler(c, i);
            if (!c.EndLocked()) return status;
            saved.Restore(ref c.S); // another processor stored to the operand between our read and write: run again
        }
    }

    /// <summary>
    /// Linear address of the operand the handler reads and writes; BTS/BTR/BTC with a register bit offset address a bit
    /// string (SDM BT), computed as Bits.BitTest does.
    /// </summary>
    private static ulong OperandAddress(Core c, Instr* i)
    {
        if (i->Op0 == Instr.MemoryOperand && i->Op1 != Instr.NoRegister && IsBitTest(i->Code))
        {
            int size = i->OpSize;
            long signedOff = Arithmetic.SignExtend(c.GetReg(i->Op1, size), size);
            long unit = signedOff >> (size == 2 ? 4 : size == 4 ? 5 : 6);
            return (c.SegBase[i->MemSeg] + ((c.EffectiveAddress(i) + (ulong)(unit * size)) & Arithmetic.SizeMask(i->AddrSize))) & c.LinearMask;
        }
        return c.LinearAddress(i);
    }

    private static bool IsBitTest(ushort code) => (Iced.Intel.Code)code is
        Iced.Intel.Code.Bts_rm16_r16 or Iced.Intel.Code.Bts_rm32_r32 or Iced.Intel.Code.Bts_rm64_r64 or
        Iced.Intel.Code.Btr_rm16_r16 or Iced.Intel.Code.Btr_rm32_r32 or Iced.Intel.Code.Btr_rm64_r64 or
        Iced.Intel.Code.Btc_rm16_r16 or Iced.Intel.Code.Btc_rm32_r32 or Iced.Intel.Code.Btc_rm64_r64;

    /// <summary>What a read-modify-write handler may change besides memory: the GPRs, RFLAGS and the lazy flags.</summary>
    private struct Snapshot
    {
        private fixed ulong _gpr[16];
        private ulong _rflags, _lazyResult, _lazySrc1, _lazySrc2;
        private uint _lazyOp, _lazySize;

        public void Save(ref CpuState s)
        {
            for (int k = 0; k < 16; k++) _gpr[k] = s.Gpr[k];
            _rflags = s.Rflags;
            _lazyResult = s.LazyResult;
            _lazySrc1 = s.LazySrc1;
            _lazySrc2 = s.LazySrc2;
            _lazyOp = s.LazyOp;
            _lazySize = s.LazySize;
        }

        public readonly void Restore(ref CpuState s)
        {
            for (int k = 0; k < 16; k++) s.Gpr[k] = _gpr[k];
            s.Rflags = _rflags;
            s.LazyResult = _lazyResult;
            s.LazySrc1 = _lazySrc1;
            s.LazySrc2 = _lazySrc2;
            s.LazyOp = _lazyOp;
            s.LazySize = _lazySize;
        }
    }
}
