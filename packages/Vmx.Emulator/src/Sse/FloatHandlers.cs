using System.Runtime.Intrinsics;
using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Sse;

/// <summary>
/// The handler for every SIMD floating-point arithmetic, compare and conversion form: gathers the operands,
/// runs the form's host thunk (<see cref="FloatThunks"/>) under the guest's MXCSR with all exceptions masked,
/// then either commits the result and the new MXCSR flags, or — when an exception the guest left unmasked
/// occurred — raises #XM (CR4.OSXMMEXCPT = 1) or #UD (= 0) without writing the destination
/// (SDM Vol. 1 §11.5.1, Vol. 3A §6.15 "Interrupt 19").
/// </summary>
internal static unsafe class FloatHandlers
{
    /// <summary>MXCSR exception flag bits IE DE ZE OE UE PE (SDM Vol. 1 §10.2.3).</summary>
    private const uint FlagBits = 0x3F;
    /// <summary>MXCSR exception mask bits IM..PM.</summary>
    private const uint MaskBits = 0x1F80;

    public static int Execute(Core c, Instr* i)
    {
        int st = SseState.Check(c);
        if (st != ExecStatus.Continue)
            return st;
        if (!FloatThunks.Available)
            return c.RaiseUD();
        int index = i->Sub;
        FloatForm form = FloatThunks.Forms[index];
        if (form.Predicate)
            index += (int)(i->Imm & 7);
        else if (form.Immediates != 0)
            index += (int)(i->Imm & (ulong)(form.Immediates - 1));

        FloatFrame f;
        f.Rflags = 0;
        f.HostMxcsr = 0;
        f.Gpr = 0;
        if (form.Destination is FloatOperand.Xmm or FloatOperand.Flags)
        {
            var d = SseState.X(c, i->Op0).AsUInt64();
            f.A0 = d.GetElement(0);
            f.A1 = d.GetElement(1);
        }
        else
        {
            f.A0 = f.A1 = 0;
        }
        f.B0 = f.B1 = 0;
        if (form.Source == FloatOperand.Xmm)
        {
            Vector128<byte> v;
            bool ok = form.MemorySize == 16
                ? SseState.Source(c, i, i->Op1, aligned: true, out v)
                : SseState.ScalarSource(c, i, i->Op1, form.MemorySize, out v);
            if (!ok)
                return ExecStatus.Event;
            f.B0 = v.AsUInt64().GetElement(0);
            f.B1 = v.AsUInt64().GetElement(1);
        }
        else
        {
            int size = form.Source == FloatOperand.Gpr64 ? 8 : 4;
            if (i->Op1 == Instr.MemoryOperand)
            {
                if (!c.Read(c.LinearAddress(i), size, out f.Gpr))
                    return ExecStatus.Event;
            }
            else
            {
                f.Gpr = c.GetReg(i->Op1, size);
            }
        }

        uint guest = c.S.Mxcsr;
        f.Mxcsr = (guest & ~FlagBits) | MaskBits;
        FloatThunks.Entries[index](&f);
        uint raised = f.Mxcsr & FlagBits;
        uint unmasked = raised & ~(guest >> 7) & FlagBits;
        if (unmasked != 0)
        {
            c.S.Mxcsr = guest | raised;
            return (c.S.Cr4 & SseState.Cr4Osxmmexcpt) != 0 ? c.RaiseException(ExceptionVector.XM) : c.RaiseUD();
        }
        c.S.Mxcsr = guest | raised;
        switch (form.Destination)
        {
            case FloatOperand.Xmm:
                SseState.X(c, i->Op0) = Vector128.Create(f.A0, f.A1).AsByte();
                break;
            case FloatOperand.Gpr32:
                c.SetReg(i->Op0, 4, f.Gpr);
                break;
            case FloatOperand.Gpr64:
                c.SetReg(i->Op0, 8, f.Gpr);
                break;
            default:
                // COMISS/UCOMISS: ZF, PF, CF from the compare; OF, SF, AF cleared (SDM Vol. 2 COMISS "Flags Affected").
                LazyFlags.SetEager(ref c.S, RflagsBits.Arith, f.Rflags & (RflagsBits.ZF | RflagsBits.PF | RflagsBits.CF));
                break;
        }
        return ExecStatus.Continue;
    }
}
