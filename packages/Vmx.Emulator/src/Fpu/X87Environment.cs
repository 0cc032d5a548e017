using VmmKit.Vmx.Emulator.Engine;

namespace VmmKit.Vmx.Emulator.Fpu;

/// <summary>
/// FNSTENV/FLDENV (14- or 28-byte environment) and FNSAVE/FRSTOR (environment + the eight registers in stack
/// order, 94 or 108 bytes), in the four layouts of SDM Vol. 1 §8.1.10 figures 8-9 to 8-12: 32- or 16-bit operand
/// size, protected or real-address mode (CR0.PE = 0). Sub: bit 0 waiting form, bit 1 16-bit layout.
/// </summary>
internal static unsafe class X87Environment
{
    /// <summary>FNSTENV/FSTENV: stores the environment, then masks every exception (Vol. 2 FSTENV).</summary>
    public static int Store(Core c, Instr* i) => StoreCommon(c, i, save: false);

    /// <summary>FNSAVE/FSAVE: stores the environment and the registers, then FNINIT (Vol. 2 FSAVE).</summary>
    public static int Save(Core c, Instr* i) => StoreCommon(c, i, save: true);

    /// <summary>FLDENV.</summary>
    public static int Load(Core c, Instr* i) => LoadCommon(c, i, restore: false);

    /// <summary>FRSTOR.</summary>
    public static int Restore(Core c, Instr* i) => LoadCommon(c, i, restore: true);

    private static int StoreCommon(Core c, Instr* i, bool save)
    {
        int st = FpuAccess.CheckX87(c, waiting: (i->Sub & 1) != 0);
        if (st != ExecStatus.Continue)
            return st;
        bool small = (i->Sub & 2) != 0;
        int envSize = small ? 14 : 28;
        int total = save ? envSize + 80 : envSize;
        Span<byte> image = stackalloc byte[108];
        image.Clear();
        ref FpuState f = ref c.S.Fpu;
        WriteEnvironment(ref f, image, small, Protected(c));
        if (save)
        {
            fixed (byte* p = image)
            {
                for (int k = 0; k < 8; k++)
                {
                    fixed (byte* r = &f.Register((f.Top + k) & 7))
                    {
                        Buffer.MemoryCopy(r, p + envSize + 10 * k, 10, 10);
                    }
                }
            }
        }
        ulong lin = c.LinearAddress(i);
        if (!FpuMemory.ProbeWrite(c, lin, total) || !FpuMemory.Write(c, lin, image[..total]))
            return ExecStatus.Event;
        if (save)
            f.Initialize();
        else
            f.Fcw |= 0x3F;
        f.Fsw = X87.WithSummary(f.Fsw, f.Fcw);
        return ExecStatus.Continue;
    }

    private static int LoadCommon(Core c, Instr* i, bool restore)
    {
        int st = FpuAccess.CheckX87(c, waiting: true);
        if (st != ExecStatus.Continue)
            return st;
        bool small = (i->Sub & 2) != 0;
        int envSize = small ? 14 : 28;
        int total = restore ? envSize + 80 : envSize;
        Span<byte> image = stackalloc byte[108];
        if (!FpuMemory.Read(c, c.LinearAddress(i), image[..total]))
            return ExecStatus.Event;
        ref FpuState f = ref c.S.Fpu;
        ReadEnvironment(ref f, image, small, Protected(c));
        if (restore)
        {
            fixed (byte* p = image)
            {
                for (int k = 0; k < 8; k++)
                {
                    fixed (byte* r = &f.Register((f.Top + k) & 7))
                    {
                        Buffer.MemoryCopy(p + envSize + 10 * k, r, 10, 10);
                        *(ushort*)(r + 10) = 0;
                        *(uint*)(r + 12) = 0;
                    }
                }
            }
        }
        return ExecStatus.Continue;
    }

    private static bool Protected(Core c) => (c.S.Cr0 & 1) != 0;

    /// <summary>Fills the environment (figures 8-9..8-12). Reserved halves of the 32-bit layouts are written as FFFFH, as hardware does.</summary>
    private static void WriteEnvironment(ref FpuState f, Span<byte> e, bool small, bool protectedMode)
    {
        ushort ftw = (ushort)f.FullTagWord();
        if (small)
        {
            Put16(e, 0, f.Fcw);
            Put16(e, 2, f.Fsw);
            Put16(e, 4, ftw);
            if (protectedMode)
            {
                Put16(e, 6, (ushort)f.Fip);
                Put16(e, 8, f.Fcs);
                Put16(e, 10, (ushort)f.Fdp);
                Put16(e, 12, f.Fds);
            }
            else
            {
                // Real mode: 20-bit linear pointers (segment * 16 + offset), FOP beside FIP[19:16].
                uint ip = (uint)(f.Fcs << 4) + (uint)f.Fip;
                uint dp = (uint)(f.Fds << 4) + (uint)f.Fdp;
                Put16(e, 6, (ushort)ip);
                Put16(e, 8, (ushort)((((ip >> 16) & 0xF) << 12) | (uint)(f.Fop & 0x7FF)));
                Put16(e, 10, (ushort)dp);
                Put16(e, 12, (ushort)(((dp >> 16) & 0xF) << 12));
            }
            return;
        }
        Put32(e, 0, 0xFFFF0000u | f.Fcw);
        Put32(e, 4, 0xFFFF0000u | f.Fsw);
        Put32(e, 8, 0xFFFF0000u | ftw);
        if (protectedMode)
        {
            Put32(e, 12, (uint)f.Fip);
            Put32(e, 16, (uint)(f.Fop & 0x7FF) << 16 | f.Fcs);
            Put32(e, 20, (uint)f.Fdp);
            Put32(e, 24, 0xFFFF0000u | f.Fds);
        }
        else
        {
            uint ip = (uint)(f.Fcs << 4) + (uint)f.Fip;
            uint dp = (uint)(f.Fds << 4) + (uint)f.Fdp;
            Put32(e, 12, 0xFFFF0000u | (ip & 0xFFFF));
            Put32(e, 16, (ip >> 16) << 12 | (uint)(f.Fop & 0x7FF));
            Put32(e, 20, 0xFFFF0000u | (dp & 0xFFFF));
            Put32(e, 24, (dp >> 16) << 12);
        }
    }

    private static void ReadEnvironment(ref FpuState f, ReadOnlySpan<byte> e, bool small, bool protectedMode)
    {
        ushort fcw = Get16(e, 0);
        ushort fsw = Get16(e, small ? 2 : 4);
        ushort ftw = Get16(e, small ? 4 : 8);
        if (small)
        {
            if (protectedMode)
            {
                f.Fip = Get16(e, 6);
                f.Fcs = Get16(e, 8);
                f.Fop = 0;
                f.Fdp = Get16(e, 10);
                f.Fds = Get16(e, 12);
            }
            else
            {
                f.Fip = Get16(e, 6) | (uint)(Get16(e, 8) >> 12) << 16;
                f.Fop = (ushort)(Get16(e, 8) & 0x7FF);
                f.Fdp = Get16(e, 10) | (uint)(Get16(e, 12) >> 12) << 16;
                f.Fcs = f.Fds = 0;
            }
        }
        else if (protectedMode)
        {
            f.Fip = Get32(e, 12);
            f.Fcs = Get16(e, 16);
            f.Fop = (ushort)(Get16(e, 18) & 0x7FF);
            f.Fdp = Get32(e, 20);
            f.Fds = Get16(e, 24);
        }
        else
        {
            f.Fip = Get16(e, 12) | (Get32(e, 16) >> 12 & 0xFFFF) << 16;
            f.Fop = (ushort)(Get16(e, 16) & 0x7FF);
            f.Fdp = Get16(e, 20) | (Get32(e, 24) >> 12 & 0xFFFF) << 16;
            f.Fcs = f.Fds = 0;
        }
        f.Fcw = (ushort)((fcw & 0x1F3F) | 0x40);
        f.Ftw = FpuState.Abridge(ftw);
        f.Fsw = X87.WithSummary(fsw, f.Fcw);
    }

    private static void Put16(Span<byte> e, int at, ushort v) => BitConverter.TryWriteBytes(e[at..], v);
    private static void Put32(Span<byte> e, int at, uint v) => BitConverter.TryWriteBytes(e[at..], v);
    private static ushort Get16(ReadOnlySpan<byte> e, int at) => BitConverter.ToUInt16(e[at..]);
    private static uint Get32(ReadOnlySpan<byte> e, int at) => BitConverter.ToUInt32(e[at..]);
}
