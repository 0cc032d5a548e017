using System.Runtime.Intrinsics;
using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Sse;

/// <summary>
/// SSE/SSE2 data movement: full-register moves (aligned and unaligned), scalar moves, MOVD/MOVQ between
/// XMM and general registers or memory, the half-register moves, mask extraction, shuffles and MXCSR
/// load/store. SDM Vol. 2, each instruction's "Operation" section.
/// </summary>
internal static unsafe class Moves
{
    /// <summary>MOVAPS/MOVAPD/MOVDQA (Sub = 1, aligned) and MOVUPS/MOVUPD/MOVDQU (Sub = 0), both directions.</summary>
    public static int Move128(Core c, Instr* i)
    {
        int st = SseState.Check(c);
        if (st != ExecStatus.Continue)
            return st;
        bool aligned = i->Sub != 0;
        if (i->Op0 == Instr.MemoryOperand)
            return SseState.Store(c, i, aligned, SseState.X(c, i->Op1)) ? ExecStatus.Continue : ExecStatus.Event;
        if (!SseState.Source(c, i, i->Op1, aligned, out var v))
            return ExecStatus.Event;
        SseState.X(c, i->Op0) = v;
        return ExecStatus.Continue;
    }

    /// <summary>MOVSS (Sub = 4) / MOVSD (Sub = 8): register to register merges the low element; a load
    /// zeroes the rest of the register; a store writes only the element.</summary>
    public static int MoveScalar(Core c, Instr* i)
    {
        int st = SseState.Check(c);
        if (st != ExecStatus.Continue)
            return st;
        int size = i->Sub;
        ulong mask = size == 4 ? 0xFFFF_FFFFUL : ulong.MaxValue;
        if (i->Op0 == Instr.MemoryOperand)
            return c.Write(c.LinearAddress(i), size, c.S.XmmLow(i->Op1) & mask) ? ExecStatus.Continue : ExecStatus.Event;
        if (i->Op1 == Instr.MemoryOperand)
        {
            if (!c.Read(c.LinearAddress(i), size, out ulong v))
                return ExecStatus.Event;
            c.S.XmmLow(i->Op0) = v;
            c.S.XmmHigh(i->Op0) = 0;
            return ExecStatus.Continue;
        }
        ref ulong low = ref c.S.XmmLow(i->Op0);
        low = (low & ~mask) | (c.S.XmmLow(i->Op1) & mask);
        return ExecStatus.Continue;
    }

    /// <summary>MOVD/MOVQ xmm, r/m32/64: the register gets the value zero-extended to 128 bits (Sub = size).</summary>
    public static int FromGpr(Core c, Instr* i)
    {
        int st = SseState.Check(c);
        if (st != ExecStatus.Continue)
            return st;
        int size = i->Sub;
        ulong v;
        if (i->Op1 == Instr.MemoryOperand)
        {
            if (!c.Read(c.LinearAddress(i), size, out v))
                return ExecStatus.Event;
        }
        else
        {
            v = c.GetReg(i->Op1, size);
        }
        c.S.XmmLow(i->Op0) = v;
        c.S.XmmHigh(i->Op0) = 0;
        return ExecStatus.Continue;
    }

    /// <summary>MOVD/MOVQ r/m32/64, xmm: the low element (a 32-bit register write zero-extends).</summary>
    public static int ToGpr(Core c, Instr* i)
    {
        int st = SseState.Check(c);
        if (st != ExecStatus.Continue)
            return st;
        int size = i->Sub;
        ulong v = c.S.XmmLow(i->Op1);
        if (i->Op0 == Instr.MemoryOperand)
            return c.Write(c.LinearAddress(i), size, v) ? ExecStatus.Continue : ExecStatus.Event;
        c.SetReg(i->Op0, size, size == 4 ? (uint)v : v);
        return ExecStatus.Continue;
    }

    /// <summary>MOVQ xmm, xmm/m64 and MOVQ xmm/m64, xmm: the low quadword, zero-extended in a register destination.</summary>
    public static int MoveQuad(Core c, Instr* i)
    {
        int st = SseState.Check(c);
        if (st != ExecStatus.Continue)
            return st;
        if (i->Op0 == Instr.MemoryOperand)
            return c.Write(c.LinearAddress(i), 8, c.S.XmmLow(i->Op1)) ? ExecStatus.Continue : ExecStatus.Event;
        ulong v;
        if (i->Op1 == Instr.MemoryOperand)
        {
            if (!c.Read(c.LinearAddress(i), 8, out v))
                return ExecStatus.Event;
        }
        else
        {
            v = c.S.XmmLow(i->Op1);
        }
        c.S.XmmLow(i->Op0) = v;
        c.S.XmmHigh(i->Op0) = 0;
        return ExecStatus.Continue;
    }

    /// <summary>Half moves, Sub: 0 MOVLPS/MOVLPD load, 1 store low, 2 MOVHPS/MOVHPD load, 3 store high,
    /// 4 MOVHLPS (dest low ← src high), 5 MOVLHPS (dest high ← src low).</summary>
    public static int MoveHalf(Core c, Instr* i)
    {
        int st = SseState.Check(c);
        if (st != ExecStatus.Continue)
            return st;
        ulong v;
        switch (i->Sub)
        {
            case 0:
                if (!c.Read(c.LinearAddress(i), 8, out v))
                    return ExecStatus.Event;
                c.S.XmmLow(i->Op0) = v;
                return ExecStatus.Continue;
            case 1:
                return c.Write(c.LinearAddress(i), 8, c.S.XmmLow(i->Op1)) ? ExecStatus.Continue : ExecStatus.Event;
            case 2:
                if (!c.Read(c.LinearAddress(i), 8, out v))
                    return ExecStatus.Event;
                c.S.XmmHigh(i->Op0) = v;
                return ExecStatus.Continue;
            case 3:
                return c.Write(c.LinearAddress(i), 8, c.S.XmmHigh(i->Op1)) ? ExecStatus.Continue : ExecStatus.Event;
            case 4:
                c.S.XmmLow(i->Op0) = c.S.XmmHigh(i->Op1);
                return ExecStatus.Continue;
            default:
                c.S.XmmHigh(i->Op0) = c.S.XmmLow(i->Op1);
                return ExecStatus.Continue;
        }
    }

    /// <summary>PMOVMSKB (Sub = 1), MOVMSKPS (4), MOVMSKPD (8): the sign bit of each element into a GPR, zero-extended.</summary>
    public static int MoveMask(Core c, Instr* i)
    {
        int st = SseState.Check(c);
        if (st != ExecStatus.Continue)
            return st;
        var v = SseState.X(c, i->Op1);
        uint mask = i->Sub switch
        {
            1 => v.ExtractMostSignificantBits(),
            4 => v.AsUInt32().ExtractMostSignificantBits(),
            _ => v.AsUInt64().ExtractMostSignificantBits(),
        };
        c.SetReg(i->Op0, i->OpSize, mask);
        return ExecStatus.Continue;
    }

    /// <summary>PSHUFD (Sub = 0), PSHUFLW (1), PSHUFHW (2) with the imm8 selector.</summary>
    public static int ShuffleImmediate(Core c, Instr* i)
    {
        int st = SseState.Check(c);
        if (st != ExecStatus.Continue)
            return st;
        if (!SseState.Source(c, i, i->Op1, aligned: true, out var s))
            return ExecStatus.Event;
        int imm = (int)(i->Imm & 0xFF);
        Vector128<byte> r;
        switch (i->Sub)
        {
            case 0:
            {
                var d = s.AsUInt32();
                r = Vector128.Create(d.GetElement(imm & 3), d.GetElement((imm >> 2) & 3), d.GetElement((imm >> 4) & 3), d.GetElement((imm >> 6) & 3)).AsByte();
                break;
            }
            case 1:
            {
                var w = s.AsUInt16();
                r = Vector128.Create(w.GetElement(imm & 3), w.GetElement((imm >> 2) & 3), w.GetElement((imm >> 4) & 3), w.GetElement((imm >> 6) & 3),
                    w.GetElement(4), w.GetElement(5), w.GetElement(6), w.GetElement(7)).AsByte();
                break;
            }
            default:
            {
                var w = s.AsUInt16();
                r = Vector128.Create(w.GetElement(0), w.GetElement(1), w.GetElement(2), w.GetElement(3),
                    w.GetElement(4 + (imm & 3)), w.GetElement(4 + ((imm >> 2) & 3)), w.GetElement(4 + ((imm >> 4) & 3)), w.GetElement(4 + ((imm >> 6) & 3))).AsByte();
                break;
            }
        }
        SseState.X(c, i->Op0) = r;
        return ExecStatus.Continue;
    }

    /// <summary>SHUFPS (Sub = 4): two dwords from dest, two from source; SHUFPD (Sub = 8): one qword from each.</summary>
    public static int ShuffleFloat(Core c, Instr* i)
    {
        int st = SseState.Check(c);
        if (st != ExecStatus.Continue)
            return st;
        if (!SseState.Source(c, i, i->Op1, aligned: true, out var s))
            return ExecStatus.Event;
        int imm = (int)(i->Imm & 0xFF);
        ref Vector128<byte> dest = ref SseState.X(c, i->Op0);
        if (i->Sub == 4)
        {
            var a = dest.AsUInt32();
            var b = s.AsUInt32();
            dest = Vector128.Create(a.GetElement(imm & 3), a.GetElement((imm >> 2) & 3), b.GetElement((imm >> 4) & 3), b.GetElement((imm >> 6) & 3)).AsByte();
        }
        else
        {
            var a = dest.AsUInt64();
            var b = s.AsUInt64();
            dest = Vector128.Create(a.GetElement(imm & 1), b.GetElement((imm >> 1) & 1)).AsByte();
        }
        return ExecStatus.Continue;
    }

    /// <summary>PEXTRW r32/r64, xmm, imm8: word imm8[2:0] zero-extended into the register.</summary>
    public static int Pextrw(Core c, Instr* i)
    {
        int st = SseState.Check(c);
        if (st != ExecStatus.Continue)
            return st;
        ushort w = SseState.X(c, i->Op1).AsUInt16().GetElement((int)(i->Imm & 7));
        c.SetReg(i->Op0, i->OpSize == 8 ? 8 : 4, w);
        return ExecStatus.Continue;
    }

    /// <summary>PINSRW xmm, r32/m16, imm8: the low word of the source into word imm8[2:0].</summary>
    public static int Pinsrw(Core c, Instr* i)
    {
        int st = SseState.Check(c);
        if (st != ExecStatus.Continue)
            return st;
        ulong v;
        if (i->Op1 == Instr.MemoryOperand)
        {
            if (!c.Read(c.LinearAddress(i), 2, out v))
                return ExecStatus.Event;
        }
        else
        {
            v = c.GetReg(i->Op1, 4);
        }
        ref Vector128<byte> d = ref SseState.X(c, i->Op0);
        d = d.AsUInt16().WithElement((int)(i->Imm & 7), (ushort)v).AsByte();
        return ExecStatus.Continue;
    }

    /// <summary>Bits of MXCSR software may set (MXCSR_MASK as FXSAVE reports it: FZ, RC, masks, DAZ, flags).</summary>
    public const uint MxcsrMask = 0xFFFF;

    /// <summary>LDMXCSR m32: #GP(0) if a reserved bit is set (SDM Vol. 2 LDMXCSR "Protected Mode Exceptions").</summary>
    public static int Ldmxcsr(Core c, Instr* i)
    {
        int st = SseState.Check(c);
        if (st != ExecStatus.Continue)
            return st;
        if (!c.Read(c.LinearAddress(i), 4, out ulong v))
            return ExecStatus.Event;
        if ((v & ~(ulong)MxcsrMask) != 0)
            return c.RaiseGP0();
        c.S.Mxcsr = (uint)v;
        return ExecStatus.Continue;
    }

    /// <summary>STMXCSR m32.</summary>
    public static int Stmxcsr(Core c, Instr* i)
    {
        int st = SseState.Check(c);
        if (st != ExecStatus.Continue)
            return st;
        return c.Write(c.LinearAddress(i), 4, c.S.Mxcsr) ? ExecStatus.Continue : ExecStatus.Event;
    }
}
