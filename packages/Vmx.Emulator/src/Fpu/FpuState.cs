using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace VmmKit.Vmx.Emulator.Engine;

/// <summary>
/// x87 FPU, MMX and XSAVE-management state of the emulated processor (SDM Vol. 1 §8.1, §9.2, §13),
/// kept at the end of <see cref="CpuState"/> with a fixed layout. 176 bytes.
/// </summary>
/// <remarks>
/// The eight data registers are stored by physical number R0..R7 (not stack order), 16 bytes each like the
/// FXSAVE image: bytes 0-7 the significand (the MMX register MMi aliases the significand of Ri, SDM Vol. 1
/// §9.2.1), bytes 8-9 sign and exponent, bytes 10-15 zero. TOP lives in <see cref="Fsw"/> bits 13:11.
/// The tag word is kept abridged as FXSAVE stores it (bit i = 1: Ri is not empty, SDM Vol. 1 §10.5.1.1);
/// the full 2-bit tags FNSTENV/FNSAVE report are computed from the register contents (§8.1.7).
/// FIP/FDP hold offsets (64-bit in 64-bit mode), FCS/FDS the selectors.
/// </remarks>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct FpuState
{
    /// <summary>R0..R7, 16 bytes each (offset 0).</summary>
    public fixed byte Registers[128];
    /// <summary>Control word FCW (offset 128); FNINIT value 037FH (SDM Vol. 1 §8.1.5).</summary>
    public ushort Fcw;
    /// <summary>Status word FSW with TOP in bits 13:11 (offset 130, §8.1.3).</summary>
    public ushort Fsw;
    /// <summary>Abridged tag word: bit i set when physical register Ri is valid, zero or special (offset 132).</summary>
    public byte Ftw;
    private byte _pad0;
    /// <summary>Last x87 opcode FOP, 11 bits (offset 134, §8.1.10).</summary>
    public ushort Fop;
    /// <summary>Last instruction pointer offset FIP (offset 136, §8.1.9).</summary>
    public ulong Fip;
    /// <summary>Last data pointer offset FDP (offset 144).</summary>
    public ulong Fdp;
    /// <summary>Last instruction CS selector FCS (offset 152).</summary>
    public ushort Fcs;
    /// <summary>Last data segment selector FDS (offset 154).</summary>
    public ushort Fds;
    private uint _pad1;
    /// <summary>XCR0 (XFEATURE_ENABLED_MASK, SDM Vol. 1 §13.3); bit 0 (x87) is always 1.</summary>
    public ulong Xcr0;
    /// <summary>Reserved for the XSAVE modified optimization (not used: XSAVEOPT always saves what XSAVE would, which §13.9 permits).</summary>
    public ulong XsaveReserved;

    /// <summary>FNINIT value of FCW.</summary>
    public const ushort DefaultFcw = 0x037F;

    /// <summary>
    /// Puts the x87 unit in its FNINIT state (SDM Vol. 1 §8.1 table 8-? / Vol. 3A table 9-1 "INIT" column): FCW 037FH,
    /// FSW 0, all tags empty, FIP/FDP/FCS/FDS/FOP 0; the data registers are unchanged.
    /// </summary>
    public void Initialize()
    {
        Fcw = DefaultFcw;
        Fsw = 0;
        Ftw = 0;
        Fop = 0;
        Fip = Fdp = 0;
        Fcs = Fds = 0;
    }

    /// <summary>Power-up / RESET state (SDM Vol. 3A §9.1.1 table 9-1): FINIT state with +0.0 in every register, XCR0 = 1.</summary>
    public void Reset()
    {
        Initialize();
        fixed (byte* r = Registers)
        {
            new Span<byte>(r, 128).Clear();
        }
        Xcr0 = 1;
    }

    /// <summary>TOP (FSW bits 13:11).</summary>
    public readonly int Top => (Fsw >> 11) & 7;

    /// <summary>Physical register Ri (16 bytes).</summary>
    [UnscopedRef]
    public ref byte Register(int physical) => ref Registers[(physical & 7) * 16];

    /// <summary>Significand (MMX view) of physical register Ri.</summary>
    [UnscopedRef]
    public ref ulong Mantissa(int physical) => ref Unsafe.As<byte, ulong>(ref Registers[(physical & 7) * 16]);

    /// <summary>Sign and exponent of physical register Ri.</summary>
    [UnscopedRef]
    public ref ushort Exponent(int physical) => ref Unsafe.As<byte, ushort>(ref Registers[(physical & 7) * 16 + 8]);

    /// <summary>
    /// The full 2-bit tag of physical register Ri (SDM Vol. 1 §8.1.7, figure 8-7): 11 empty, 00 valid, 01 zero,
    /// 10 special (NaN, infinity, denormal, unnormal).
    /// </summary>
    public int FullTag(int physical)
    {
        if ((Ftw & (1 << physical)) == 0)
            return 3;
        ulong m = Mantissa(physical);
        int e = Exponent(physical) & 0x7FFF;
        if (e == 0x7FFF)
            return 2;
        if (e == 0)
            return m == 0 ? 1 : 2;
        return (m >> 63) != 0 ? 0 : 2;
    }

    /// <summary>The full tag word (FNSTENV/FNSAVE).</summary>
    public int FullTagWord()
    {
        int w = 0;
        for (int r = 0; r < 8; r++)
            w |= FullTag(r) << (2 * r);
        return w;
    }

    /// <summary>Abridged tag word from a full one (FLDENV/FRSTOR: only "empty" matters, §8.1.7).</summary>
    public static byte Abridge(int fullTagWord)
    {
        int a = 0;
        for (int r = 0; r < 8; r++)
            if (((fullTagWord >> (2 * r)) & 3) != 3)
                a |= 1 << r;
        return (byte)a;
    }

    /// <summary>The x87 state component is in its initial configuration (SDM Vol. 1 §13.6: XINUSE[0] may be 0).</summary>
    public bool X87InInitialConfiguration()
    {
        if (Fcw != DefaultFcw || Fsw != 0 || Ftw != 0 || Fop != 0 || Fip != 0 || Fdp != 0 || Fcs != 0 || Fds != 0)
            return false;
        fixed (byte* r = Registers)
        {
            return !new ReadOnlySpan<byte>(r, 128).ContainsAnyExcept((byte)0);
        }
    }
}
