using System.Text;

namespace VmmKit.Vmx.Emulator.Tests.Differential;

/// <summary>
/// The architectural state the differential tester sets before a case and compares after it:
/// the sixteen GPRs (Iced/SDM encoding order RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8-R15),
/// RFLAGS, XMM0-15, MXCSR, and the bytes of the scratch data and stack areas.
/// </summary>
internal sealed class CpuSnapshot
{
    public static readonly string[] GprNames =
        ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];

    public readonly ulong[] Gpr = new ulong[16];
    public ulong Rflags;
    public ulong Rip;
    public readonly UInt128[] Xmm = new UInt128[16];
    public uint Mxcsr;
    public readonly byte[] Scratch = new byte[TestArena.ScratchSize];
    public readonly byte[] Stack = new byte[TestArena.StackSize];
    /// <summary>x87/MMX state as the 64-bit FXSAVE image (SDM Vol. 1 §10.5.1); its MXCSR and XMM fields are unused
    /// (<see cref="Mxcsr"/> and <see cref="Xmm"/> hold them).</summary>
    public readonly byte[] Fx = new byte[512];

    public CpuSnapshot Clone()
    {
        var c = new CpuSnapshot { Rflags = Rflags, Rip = Rip, Mxcsr = Mxcsr };
        Gpr.CopyTo(c.Gpr, 0);
        Xmm.CopyTo(c.Xmm, 0);
        Scratch.CopyTo(c.Scratch, 0);
        Stack.CopyTo(c.Stack, 0);
        Fx.CopyTo(c.Fx, 0);
        return c;
    }

    /// <summary>Describes every difference between <paramref name="expected"/> (native) and
    /// <paramref name="actual"/> (emulator); RFLAGS bits in <paramref name="undefinedFlags"/> are ignored.
    /// Returns null when they agree.</summary>
    public static string? Compare(CpuSnapshot expected, CpuSnapshot actual, ulong undefinedFlags, bool compareXmm = true)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < 16; i++)
        {
            if (expected.Gpr[i] != actual.Gpr[i])
                sb.AppendLine($"  {GprNames[i]}: native {expected.Gpr[i]:X16} emulator {actual.Gpr[i]:X16}");
        }
        if (((expected.Rflags ^ actual.Rflags) & ~undefinedFlags & RflagsBits.Compared) != 0)
        {
            sb.AppendLine($"  rflags: native {expected.Rflags:X8} emulator {actual.Rflags:X8} (undefined mask {undefinedFlags:X}, differing {(expected.Rflags ^ actual.Rflags) & ~undefinedFlags & RflagsBits.Compared:X}: {RflagsBits.Describe((expected.Rflags ^ actual.Rflags) & ~undefinedFlags & RflagsBits.Compared)})");
        }
        if (compareXmm)
        {
            for (int i = 0; i < 16; i++)
            {
                if (expected.Xmm[i] != actual.Xmm[i])
                    sb.AppendLine($"  xmm{i}: native {expected.Xmm[i]:X32} emulator {actual.Xmm[i]:X32}");
            }
            if (expected.Mxcsr != actual.Mxcsr)
                sb.AppendLine($"  mxcsr: native {expected.Mxcsr:X8} emulator {actual.Mxcsr:X8}");
        }
        // x87/MMX: FCW, FSW, abridged FTW and the eight registers (10 bytes each). FOP, FIP and FDP are not compared:
        // AMD processors store them only while an exception is pending (AMD APM Vol. 2 §11.4.4 "FXSAVE"), the
        // emulator as Intel processors do after every non-control instruction.
        for (int k = 0; k < 5; k++)
        {
            if (expected.Fx[k] != actual.Fx[k])
            {
                sb.AppendLine($"  x87 fcw/fsw/ftw: native {Convert.ToHexString(expected.Fx, 0, 5)} emulator {Convert.ToHexString(actual.Fx, 0, 5)}");
                break;
            }
        }
        for (int r = 0; r < 8; r++)
        {
            var e = expected.Fx.AsSpan(32 + 16 * r, 10);
            var a = actual.Fx.AsSpan(32 + 16 * r, 10);
            if (!e.SequenceEqual(a))
                sb.AppendLine($"  st{r}: native {Convert.ToHexString(e)} emulator {Convert.ToHexString(a)}");
        }
        DiffBytes(sb, "scratch", TestArena.ScratchOffset, expected.Scratch, actual.Scratch);
        DiffBytes(sb, "stack", TestArena.StackOffset, expected.Stack, actual.Stack);
        return sb.Length == 0 ? null : sb.ToString();
    }

    private static void DiffBytes(StringBuilder sb, string name, ulong offset, byte[] a, byte[] b)
    {
        int shown = 0;
        for (int i = 0; i < a.Length; i++)
        {
            if (a[i] != b[i])
            {
                if (shown++ < 8)
                    sb.AppendLine($"  {name}+{i:X4} (base+{offset + (ulong)i:X5}): native {a[i]:X2} emulator {b[i]:X2}");
            }
        }
        if (shown > 8)
            sb.AppendLine($"  ... {shown - 8} more differing {name} bytes");
    }

    public string Describe()
    {
        var sb = new StringBuilder();
        for (int i = 0; i < 16; i++)
            sb.Append($"{GprNames[i]}={Gpr[i]:X16}{(i % 4 == 3 ? "\n" : " ")}");
        sb.AppendLine($"rflags={Rflags:X8} mxcsr={Mxcsr:X8} fcw={BitConverter.ToUInt16(Fx, 0):X4} fsw={BitConverter.ToUInt16(Fx, 2):X4} ftw={Fx[4]:X2}");
        for (int r = 0; r < 8; r++)
            sb.Append($"st{r}={Convert.ToHexString(Fx, 32 + 16 * r, 10)}{(r % 4 == 3 ? "\n" : " ")}");
        for (int i = 0; i < 16; i++)
            sb.Append($"xmm{i}={Xmm[i]:X32}{(i % 2 == 1 ? "\n" : " ")}");
        return sb.ToString();
    }
}

/// <summary>RFLAGS bit positions (SDM Vol. 1 §3.4.3).</summary>
internal static class RflagsBits
{
    public const ulong CF = 1 << 0;
    public const ulong PF = 1 << 2;
    public const ulong AF = 1 << 4;
    public const ulong ZF = 1 << 6;
    public const ulong SF = 1 << 7;
    public const ulong TF = 1 << 8;
    public const ulong IF = 1 << 9;
    public const ulong DF = 1 << 10;
    public const ulong OF = 1 << 11;
    public const ulong Arithmetic = CF | PF | AF | ZF | SF | OF;
    public const ulong All = ~0UL;
    /// <summary>The bits a user-mode sequence can change and the tester compares: the status flags and DF.</summary>
    public const ulong Compared = Arithmetic | DF;

    public static string Describe(ulong mask)
    {
        var parts = new List<string>();
        if ((mask & CF) != 0) parts.Add("CF");
        if ((mask & PF) != 0) parts.Add("PF");
        if ((mask & AF) != 0) parts.Add("AF");
        if ((mask & ZF) != 0) parts.Add("ZF");
        if ((mask & SF) != 0) parts.Add("SF");
        if ((mask & DF) != 0) parts.Add("DF");
        if ((mask & OF) != 0) parts.Add("OF");
        return string.Join(",", parts);
    }
}
