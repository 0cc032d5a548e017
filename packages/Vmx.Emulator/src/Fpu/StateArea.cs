using VmmKit.Vmx.Emulator.Engine;
using VmmKit.Vmx.Emulator.Sse;

namespace VmmKit.Vmx.Emulator.Fpu;

/// <summary>
/// FXSAVE/FXRSTOR (the 512-byte legacy area, SDM Vol. 1 §10.5.1 and Vol. 2 FXSAVE tables 3-43, 3-46, 3-47) and
/// XSAVE/XSAVEOPT/XRSTOR in the standard format for state components 0 (x87) and 1 (SSE) (SDM Vol. 1 §13.4,
/// §13.7, §13.8). Sub bit 0: the REX.W form (64-bit FIP/FDP, no FCS/FDS).
/// </summary>
internal static unsafe class StateArea
{
    /// <summary>MXCSR_MASK reported in the area: every MXCSR bit 15:0 is writable, including DAZ (SDM Vol. 1 §11.6.6).</summary>
    public const uint MxcsrMask = 0xFFFF;
    /// <summary>Size of the XSAVE area for x87 + SSE: legacy region + header (CPUID.(EAX=0DH,ECX=0):EBX/ECX).</summary>
    public const int XsaveSize = 576;
    /// <summary>XCR0 bits this processor supports: x87 and SSE (CPUID.(EAX=0DH,ECX=0):EAX).</summary>
    public const ulong SupportedXcr0 = 3;

    /// <summary>FXSAVE m512byte / FXSAVE64.</summary>
    public static int Fxsave(Core c, Instr* i)
    {
        int st = CheckFx(c, out ulong lin, i);
        if (st != ExecStatus.Continue)
            return st;
        // Bytes the instruction does not write are kept: read them back after checking the write (a fault reports a write).
        Span<byte> area = stackalloc byte[512];
        if (!FpuMemory.ProbeWrite(c, lin, 512) || !FpuMemory.Read(c, lin, area))
            return ExecStatus.Event;
        WriteLegacy(c, area, wide: (i->Sub & 1) != 0, x87: true, sse: true, mxcsr: true);
        return FpuMemory.Write(c, lin, area) ? ExecStatus.Continue : ExecStatus.Event;
    }

    /// <summary>FXRSTOR m512byte / FXRSTOR64: #GP(0) for reserved MXCSR bits, nothing loaded then.</summary>
    public static int Fxrstor(Core c, Instr* i)
    {
        int st = CheckFx(c, out ulong lin, i);
        if (st != ExecStatus.Continue)
            return st;
        Span<byte> area = stackalloc byte[512];
        if (!FpuMemory.Read(c, lin, area))
            return ExecStatus.Event;
        if ((BitConverter.ToUInt32(area[24..]) & ~MxcsrMask) != 0)
            return c.RaiseGP0();
        ReadLegacy(c, area, wide: (i->Sub & 1) != 0, x87: true, sse: true, mxcsr: true);
        return ExecStatus.Continue;
    }

    /// <summary>#NM (CR0.TS or CR0.EM), #GP(0) unless 16-byte aligned (Vol. 2 FXSAVE "Protected Mode Exceptions").</summary>
    private static int CheckFx(Core c, out ulong lin, Instr* i)
    {
        lin = 0;
        ref CpuState s = ref c.S;
        if ((s.Cr0 & (FpuAccess.Cr0Em | FpuAccess.Cr0Ts)) != 0)
            return c.RaiseException(ExceptionVector.NM);
        FpuAccess.EnsureReset(ref s);
        lin = c.LinearAddress(i);
        return (lin & 15) != 0 ? c.RaiseGP0() : ExecStatus.Continue;
    }

    /// <summary>XSAVE and XSAVEOPT (Sub bit 0: REX.W). XSAVEOPT saves what XSAVE would (SDM Vol. 1 §13.9 permits omitting the optimizations).</summary>
    public static int Xsave(Core c, Instr* i)
    {
        int st = CheckXsave(c, i, out ulong lin, out ulong rfbm);
        if (st != ExecStatus.Continue)
            return st;
        Span<byte> area = stackalloc byte[XsaveSize];
        if (!FpuMemory.ProbeWrite(c, lin, XsaveSize) || !FpuMemory.Read(c, lin, area))
            return ExecStatus.Event;
        WriteLegacy(c, area, wide: (i->Sub & 1) != 0, x87: (rfbm & 1) != 0, sse: (rfbm & 2) != 0, mxcsr: (rfbm & 6) != 0);
        // XSTATE_BV[i] <- XINUSE[i] for i in RFBM; its other bits and the rest of the header are not written (§13.7).
        ulong xstate = BitConverter.ToUInt64(area[512..]);
        xstate = (xstate & ~rfbm) | (InUse(ref c.S) & rfbm);
        BitConverter.TryWriteBytes(area[512..], xstate);
        return FpuMemory.Write(c, lin, area) ? ExecStatus.Continue : ExecStatus.Event;
    }

    /// <summary>XRSTOR in the standard form (§13.8.1): components in RFBM are loaded (XSTATE_BV[i] = 1) or initialized (0).</summary>
    public static int Xrstor(Core c, Instr* i)
    {
        int st = CheckXsave(c, i, out ulong lin, out ulong rfbm);
        if (st != ExecStatus.Continue)
            return st;
        Span<byte> area = stackalloc byte[XsaveSize];
        if (!FpuMemory.Read(c, lin, area))
            return ExecStatus.Event;
        ulong xstateBv = BitConverter.ToUInt64(area[512..]);
        // #GP(0): XCOMP_BV[63] = 1 needs the compacted form (XSAVEC, not supported); bytes 23:8 of the header must be
        // zero; XSTATE_BV may not name a component XCR0 does not enable; MXCSR reserved bits (§13.8, Vol. 2 XRSTOR).
        if (BitConverter.ToUInt64(area[520..]) != 0 || BitConverter.ToUInt64(area[528..]) != 0)
            return c.RaiseGP0();
        if ((xstateBv & ~c.S.Fpu.Xcr0) != 0)
            return c.RaiseGP0();
        bool mxcsr = (rfbm & 6) != 0;
        if (mxcsr && (BitConverter.ToUInt32(area[24..]) & ~MxcsrMask) != 0)
            return c.RaiseGP0();
        bool wide = (i->Sub & 1) != 0;
        ref CpuState s = ref c.S;
        if ((rfbm & 1) != 0 && (xstateBv & 1) == 0)
        {
            s.Fpu.Initialize();
            fixed (byte* r = s.Fpu.Registers)
            {
                new Span<byte>(r, 128).Clear();
            }
        }
        if ((rfbm & 2) != 0 && (xstateBv & 2) == 0)
        {
            for (int k = 0; k < XmmCount(c); k++)
                s.XmmLow(k) = s.XmmHigh(k) = 0;
        }
        ReadLegacy(c, area, wide, x87: (rfbm & xstateBv & 1) != 0, sse: (rfbm & xstateBv & 2) != 0, mxcsr: mxcsr);
        return ExecStatus.Continue;
    }

    /// <summary>
    /// #UD when CR4.OSXSAVE = 0 (or LOCK), #NM when CR0.TS = 1, #GP(0) unless 64-byte aligned (Vol. 2 XSAVE
    /// "Protected Mode Exceptions"). RFBM = XCR0 AND EDX:EAX.
    /// </summary>
    private static int CheckXsave(Core c, Instr* i, out ulong lin, out ulong rfbm)
    {
        lin = rfbm = 0;
        ref CpuState s = ref c.S;
        if ((s.Cr4 & FpuAccess.Cr4Osxsave) == 0 || (i->Flags & InstrFlags.Lock) != 0)
            return c.RaiseUD();
        if ((s.Cr0 & FpuAccess.Cr0Ts) != 0)
            return c.RaiseException(ExceptionVector.NM);
        FpuAccess.EnsureReset(ref s);
        lin = c.LinearAddress(i);
        if ((lin & 63) != 0)
            return c.RaiseGP0();
        rfbm = s.Fpu.Xcr0 & ((s.Gpr[2] << 32) | (uint)s.Gpr[0]);
        return ExecStatus.Continue;
    }

    /// <summary>
    /// XINUSE (§13.6): bit 0 unless the x87 state is in its initial configuration, bit 1 unless every XMM register
    /// is zero and MXCSR is 1F80H (a processor may always report a component in use; this one reports it exactly
    /// when its state differs from the initial one).
    /// </summary>
    public static ulong InUse(ref CpuState s)
    {
        ulong u = s.Fpu.X87InInitialConfiguration() ? 0UL : 1UL;
        bool sseInit = s.Mxcsr == 0x1F80;
        for (int k = 0; k < 32 && sseInit; k++)
            sseInit = s.Xmm[k] == 0;
        return sseInit ? u : u | 2;
    }

    private static int XmmCount(Core c) => c.Bitness == 64 ? 16 : 8;

    /// <summary>Fills the legacy region's x87 fields (0-23, 32-159), MXCSR (24-31) and XMM (160-415 or 160-287).</summary>
    private static void WriteLegacy(Core c, Span<byte> a, bool wide, bool x87, bool sse, bool mxcsr)
    {
        ref CpuState s = ref c.S;
        ref FpuState f = ref s.Fpu;
        if (x87)
        {
            BitConverter.TryWriteBytes(a[0..], f.Fcw);
            BitConverter.TryWriteBytes(a[2..], f.Fsw);
            a[4] = f.Ftw;
            a[5] = 0;
            BitConverter.TryWriteBytes(a[6..], f.Fop);
            if (wide)
            {
                BitConverter.TryWriteBytes(a[8..], f.Fip);
                BitConverter.TryWriteBytes(a[16..], f.Fdp);
            }
            else
            {
                BitConverter.TryWriteBytes(a[8..], (uint)f.Fip);
                BitConverter.TryWriteBytes(a[12..], (uint)f.Fcs);
                BitConverter.TryWriteBytes(a[16..], (uint)f.Fdp);
                BitConverter.TryWriteBytes(a[20..], (uint)f.Fds);
            }
            for (int k = 0; k < 8; k++)
            {
                fixed (byte* r = &f.Register((f.Top + k) & 7))
                {
                    new ReadOnlySpan<byte>(r, 10).CopyTo(a[(32 + 16 * k)..]);
                }
                a.Slice(32 + 16 * k + 10, 6).Clear();
            }
        }
        if (mxcsr)
        {
            BitConverter.TryWriteBytes(a[24..], s.Mxcsr);
            BitConverter.TryWriteBytes(a[28..], MxcsrMask);
        }
        if (sse)
        {
            for (int k = 0; k < XmmCount(c); k++)
            {
                BitConverter.TryWriteBytes(a[(160 + 16 * k)..], s.XmmLow(k));
                BitConverter.TryWriteBytes(a[(168 + 16 * k)..], s.XmmHigh(k));
            }
        }
    }

    private static void ReadLegacy(Core c, ReadOnlySpan<byte> a, bool wide, bool x87, bool sse, bool mxcsr)
    {
        ref CpuState s = ref c.S;
        ref FpuState f = ref s.Fpu;
        if (x87)
        {
            f.Fcw = (ushort)((BitConverter.ToUInt16(a[0..]) & 0x1F3F) | 0x40);
            f.Fsw = BitConverter.ToUInt16(a[2..]);
            f.Ftw = a[4];
            f.Fop = (ushort)(BitConverter.ToUInt16(a[6..]) & 0x7FF);
            if (wide)
            {
                f.Fip = BitConverter.ToUInt64(a[8..]);
                f.Fdp = BitConverter.ToUInt64(a[16..]);
                f.Fcs = f.Fds = 0;
            }
            else
            {
                f.Fip = BitConverter.ToUInt32(a[8..]);
                f.Fcs = BitConverter.ToUInt16(a[12..]);
                f.Fdp = BitConverter.ToUInt32(a[16..]);
                f.Fds = BitConverter.ToUInt16(a[20..]);
            }
            for (int k = 0; k < 8; k++)
            {
                fixed (byte* r = &f.Register((f.Top + k) & 7))
                {
                    a.Slice(32 + 16 * k, 10).CopyTo(new Span<byte>(r, 16));
                    *(ushort*)(r + 10) = 0;
                    *(uint*)(r + 12) = 0;
                }
            }
            // FXRSTOR does not raise a pending exception; the next waiting instruction does (Vol. 2 FXRSTOR).
            f.Fsw = X87.WithSummary(f.Fsw, f.Fcw);
        }
        if (mxcsr)
            s.Mxcsr = BitConverter.ToUInt32(a[24..]);
        if (sse)
        {
            for (int k = 0; k < XmmCount(c); k++)
            {
                s.XmmLow(k) = BitConverter.ToUInt64(a[(160 + 16 * k)..]);
                s.XmmHigh(k) = BitConverter.ToUInt64(a[(168 + 16 * k)..]);
            }
        }
    }
}
