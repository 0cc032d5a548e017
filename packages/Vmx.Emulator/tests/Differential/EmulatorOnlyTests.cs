using Iced.Intel;
using VmmKit.Vmx.Emulator.Engine;
using VmmKit.Vmx.Emulator.Testing;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.Vmx.Emulator.Tests.Differential;

/// <summary>
/// Cases the host cannot run in a 64-bit user process (faults, 32-bit-only instructions, exits), checked
/// against values derived from the SDM's "Operation" pseudocode: #DE for DIV/IDIV/AAM, the BCD adjusts
/// exhaustively over AL × AF × CF, PUSHA/POPA, BOUND, alignment #GP, SIMD exceptions, CPUID, RDTSC.
/// </summary>
public sealed unsafe class EmulatorOnlyTests
{
    private const ulong Code0 = 0x1000;
    private const ulong Stack0 = 0x8000;
    private const ulong Data0 = 0x4000;

    private static FlatTestMachine Machine(int bitness)
    {
        var m = new FlatTestMachine(1 << 20, bitness);
        m.State.Cr4 |= SseStateBits.Osfxsr | SseStateBits.Osxmmexcpt;
        return m;
    }

    private static FlatRunResult Run(FlatTestMachine m, Action<Assembler> build, int bitness)
    {
        var a = new Assembler(bitness);
        build(a);
        a.hlt();
        var w = new ByteWriter();
        a.Assemble(w, Code0);
        w.Bytes.ToArray().CopyTo(m.Memory[(int)Code0..]);
        m.State.Rip = Code0;
        m.State.R(4) = Stack0;
        return m.Run(10_000);
    }

    // ---- #DE

    public static TheoryData<int, bool, ulong, ulong, ulong> DivideErrors() => new()
    {
        // size, signed, high (DX/EDX/RDX or AH), low (AX...), divisor
        { 1, false, 0, 0x10, 0 },
        { 1, false, 0x1, 0x00, 1 },          // AX = 0x100 / 1 does not fit AL
        { 2, false, 0x5, 0, 5 },
        { 4, false, 0, 1, 0 },
        { 8, false, 1, 0, 1 },
        { 8, false, ulong.MaxValue, 0, ulong.MaxValue },
        { 1, true, 0xFF, 0x80, 0xFF },       // AX = -128 / -1 = 128 does not fit AL
        { 2, true, 0xFFFF, 0x8000, 0xFFFF }, // -32768 / -1
        { 4, true, 0xFFFF_FFFF, 0x8000_0000, 0xFFFF_FFFF },
        { 8, true, ulong.MaxValue, 0x8000_0000_0000_0000, ulong.MaxValue }, // INT64_MIN / -1
        { 8, true, 0, 0, 0 },
    };

    /// <summary>DIV/IDIV: "#DE If the source operand (divisor) is 0; if the quotient is too large for the designated
    /// register." The fault leaves every register as it was and RIP at the instruction.</summary>
    [Theory]
    [MemberData(nameof(DivideErrors))]
    public void Divide_error_faults_without_side_effects(int size, bool signed, ulong high, ulong low, ulong divisor)
    {
        using var m = Machine(64);
        m.State.R(4) = Stack0;
        m.State.R(3) = divisor;
        if (size == 1)
            m.State.R(0) = (high << 8) | low;
        else
        {
            m.State.R(0) = low;
            m.State.R(2) = high;
        }
        var before = Snapshot(m);
        var r = Run(m, a =>
        {
            switch (size, signed)
            {
                case (1, false): a.div(bl); break;
                case (2, false): a.div(bx); break;
                case (4, false): a.div(ebx); break;
                case (8, false): a.div(rbx); break;
                case (1, true): a.idiv(bl); break;
                case (2, true): a.idiv(bx); break;
                case (4, true): a.idiv(ebx); break;
                default: a.idiv(rbx); break;
            }
        }, 64);
        Assert.Equal(FlatStopReason.Exception, r.Reason);
        Assert.Equal(0, r.Vector);
        Assert.Equal(Code0, m.State.Rip);
        Assert.Equal(before, Snapshot(m));
    }

    private static string Snapshot(FlatTestMachine m)
    {
        var parts = new List<string>();
        for (int i = 0; i < 16; i++)
            parts.Add(m.State.R(i).ToString("X"));
        return string.Join(",", parts);
    }

    // ---- BCD (32-bit only), exhaustively against the SDM pseudocode

    private static ulong Szp(byte v) =>
        (v == 0 ? RflagsBits.ZF : 0) | ((v & 0x80) != 0 ? RflagsBits.SF : 0) |
        ((System.Numerics.BitOperations.PopCount(v) & 1) == 0 ? RflagsBits.PF : 0);

    /// <summary>SDM DAA/DAS/AAA/AAS "Operation"; returns (AX, flags) and the flags the SDM leaves undefined.</summary>
    private static (ushort Ax, ulong Flags, ulong Undefined) Reference(Mnemonic m, ushort ax, bool af, bool cf)
    {
        byte al = (byte)ax, ah = (byte)(ax >> 8);
        bool lowAdjust = (al & 0x0F) > 9 || af;
        switch (m)
        {
            case Mnemonic.Daa:
            {
                byte oldAl = al;
                bool newCf = false, newAf = false;
                if (lowAdjust)
                {
                    newCf = cf || al + 6 > 0xFF;
                    al = (byte)(al + 6);
                    newAf = true;
                }
                if (oldAl > 0x99 || cf)
                {
                    al = (byte)(al + 0x60);
                    newCf = true;
                }
                else
                {
                    newCf = false;
                }
                return ((ushort)((ah << 8) | al), Szp(al) | (newCf ? RflagsBits.CF : 0) | (newAf ? RflagsBits.AF : 0), RflagsBits.OF);
            }
            case Mnemonic.Das:
            {
                byte oldAl = al;
                bool newCf = false, newAf = false;
                if (lowAdjust)
                {
                    newCf = cf || al < 6;
                    al = (byte)(al - 6);
                    newAf = true;
                }
                if (oldAl > 0x99 || cf)
                {
                    al = (byte)(al - 0x60);
                    newCf = true;
                }
                return ((ushort)((ah << 8) | al), Szp(al) | (newCf ? RflagsBits.CF : 0) | (newAf ? RflagsBits.AF : 0), RflagsBits.OF);
            }
            case Mnemonic.Aaa:
            {
                ushort r = lowAdjust ? (ushort)(ax + 0x106) : ax;
                r = (ushort)(r & 0xFF0F);
                ulong f = lowAdjust ? RflagsBits.AF | RflagsBits.CF : 0;
                return (r, f, RflagsBits.OF | RflagsBits.SF | RflagsBits.ZF | RflagsBits.PF);
            }
            default: // AAS
            {
                ushort r = ax;
                if (lowAdjust)
                {
                    r = (ushort)(r - 6);
                    r = (ushort)(((((r >> 8) - 1) & 0xFF) << 8) | (r & 0xFF));
                }
                r = (ushort)(r & 0xFF0F);
                ulong f = lowAdjust ? RflagsBits.AF | RflagsBits.CF : 0;
                return (r, f, RflagsBits.OF | RflagsBits.SF | RflagsBits.ZF | RflagsBits.PF);
            }
        }
    }

    [Theory]
    [InlineData(Mnemonic.Daa)]
    [InlineData(Mnemonic.Das)]
    [InlineData(Mnemonic.Aaa)]
    [InlineData(Mnemonic.Aas)]
    public void Bcd_adjust_matches_the_sdm_for_every_input(Mnemonic mnemonic)
    {
        using var m = Machine(32);
        var failures = new List<string>();
        foreach (ushort ah in new ushort[] { 0x00, 0x7F, 0xFF })
        for (int al = 0; al < 256; al++)
        for (int flags = 0; flags < 4; flags++)
        {
            bool af = (flags & 1) != 0, cf = (flags & 2) != 0;
            ushort ax = (ushort)((ah << 8) | al);
            m.State.R(0) = 0xDEAD_0000 | ax;
            m.State.SetRflags(0x202 | (af ? RflagsBits.AF : 0) | (cf ? RflagsBits.CF : 0));
            var r = Run(m, a =>
            {
                switch (mnemonic)
                {
                    case Mnemonic.Daa: a.daa(); break;
                    case Mnemonic.Das: a.das(); break;
                    case Mnemonic.Aaa: a.aaa(); break;
                    default: a.aas(); break;
                }
            }, 32);
            var (eax, eflags, undefined) = Reference(mnemonic, ax, af, cf);
            ulong got = m.State.GetRflags() & RflagsBits.Arithmetic & ~undefined;
            if (r.Reason != FlatStopReason.Halt || (ushort)m.State.R(0) != eax || (m.State.R(0) >> 16) != 0xDEAD || got != (eflags & ~undefined))
            {
                failures.Add($"{mnemonic} AX={ax:X4} AF={af} CF={cf}: got {r.Reason} AX={(ushort)m.State.R(0):X4} flags {got:X}, SDM AX={eax:X4} flags {eflags & ~undefined:X}");
            }
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(10)) + $"\n({failures.Count} failures)");
    }

    [Fact]
    public void Aam_and_aad_match_the_sdm_and_aam_0_is_a_divide_error()
    {
        using var m = Machine(32);
        foreach (byte imm in new byte[] { 10, 1, 7, 255, 16 })
        for (int ax = 0; ax < 0x10000; ax += 0x0101 + 0x10)
        {
            m.State.R(0) = (uint)ax;
            Run(m, a => a.aam(imm), 32);
            byte al = (byte)ax;
            ushort expected = (ushort)(((al / imm) << 8) | (al % imm));
            Assert.Equal(expected, (ushort)m.State.R(0));
            Assert.Equal(Szp((byte)(al % imm)), m.State.GetRflags() & (RflagsBits.SF | RflagsBits.ZF | RflagsBits.PF));

            m.State.R(0) = (uint)ax;
            Run(m, a => a.aad(imm), 32);
            byte r = (byte)((byte)ax + (ax >> 8) * imm);
            Assert.Equal(r, (ushort)m.State.R(0));
            Assert.Equal(Szp(r), m.State.GetRflags() & (RflagsBits.SF | RflagsBits.ZF | RflagsBits.PF));
        }
        m.State.R(0) = 0x1234;
        var fault = Run(m, a => a.aam(0), 32);
        Assert.Equal(FlatStopReason.Exception, fault.Reason);
        Assert.Equal(0, fault.Vector);
        Assert.Equal(0x1234UL, m.State.R(0));
    }

    [Fact]
    public void Bcd_instructions_are_undefined_in_64_bit_mode()
    {
        using var m = Machine(64);
        foreach (byte opcode in new byte[] { 0x27, 0x2F, 0x37, 0x3F, 0x60, 0x61 })
        {
            m.Memory[(int)Code0] = opcode;
            m.Memory[(int)Code0 + 1] = 0xF4;
            m.State.Rip = Code0;
            var r = m.Run(10);
            Assert.Equal(FlatStopReason.Exception, r.Reason);
            Assert.Equal(6, r.Vector);
        }
    }

    [Fact]
    public void Pusha_popa_round_trip_and_layout()
    {
        using var m = Machine(32);
        uint[] values = [0x11111111, 0x22222222, 0x33333333, 0x44444444, 0, 0x66666666, 0x77777777, 0x88888888];
        for (int k = 0; k < 8; k++)
        {
            if (k != 4)
                m.State.R(k) = values[k];
        }
        var r = Run(m, a =>
        {
            a.pushad();
            a.mov(eax, 0);
            a.mov(ebx, 0);
            a.mov(ebp, 0);
            a.popad();
        }, 32);
        Assert.Equal(FlatStopReason.Halt, r.Reason);
        for (int k = 0; k < 8; k++)
        {
            if (k != 4)
                Assert.Equal(values[k], (uint)m.State.R(k));
        }
        Assert.Equal(Stack0, m.State.R(4));
        // SDM PUSHA: EAX is pushed first (highest address), EDI last; the ESP slot holds ESP before the push.
        Assert.Equal(values[0], BitConverter.ToUInt32(m.Memory[(int)(Stack0 - 4)..]));
        Assert.Equal((uint)Stack0, BitConverter.ToUInt32(m.Memory[(int)(Stack0 - 20)..]));
        Assert.Equal(values[7], BitConverter.ToUInt32(m.Memory[(int)(Stack0 - 32)..]));
    }

    [Fact]
    public void Bound_raises_br_only_outside_the_bounds()
    {
        using var m = Machine(32);
        BitConverter.TryWriteBytes(m.Memory[(int)Data0..], -5);
        BitConverter.TryWriteBytes(m.Memory[(int)(Data0 + 4)..], 100);
        foreach (var (index, inside) in new[] { (-5, true), (100, true), (0, true), (-6, false), (101, false) })
        {
            m.State.R(0) = (uint)index;
            var r = Run(m, a => a.bound(eax, __qword_ptr[(uint)Data0]), 32);
            if (inside)
                Assert.Equal(FlatStopReason.Halt, r.Reason);
            else
            {
                Assert.Equal(FlatStopReason.Exception, r.Reason);
                Assert.Equal(5, r.Vector);
                Assert.Equal(Code0, m.State.Rip);
            }
        }
    }

    // ---- alignment and SIMD exceptions

    [Fact]
    public void Misaligned_cmpxchg16b_and_movaps_raise_gp()
    {
        using var m = Machine(64);
        m.State.R(3) = Data0 + 8;
        var r = Run(m, a => a.cmpxchg16b(__xmmword_ptr[rbx]), 64);
        Assert.Equal((FlatStopReason.Exception, 13), (r.Reason, r.Vector));
        r = Run(m, a => a.movaps(xmm1, __xmmword_ptr[rbx]), 64);
        Assert.Equal((FlatStopReason.Exception, 13), (r.Reason, r.Vector));
        r = Run(m, a => a.paddb(xmm1, __xmmword_ptr[rbx]), 64);
        Assert.Equal((FlatStopReason.Exception, 13), (r.Reason, r.Vector));
        r = Run(m, a => a.movups(xmm1, __xmmword_ptr[rbx]), 64);
        Assert.Equal(FlatStopReason.Halt, r.Reason);
    }

    [Fact]
    public void Ldmxcsr_with_a_reserved_bit_raises_gp()
    {
        using var m = Machine(64);
        BitConverter.TryWriteBytes(m.Memory[(int)Data0..], 0x0001_1F80u);
        m.State.R(3) = Data0;
        var r = Run(m, a => a.ldmxcsr(__dword_ptr[rbx]), 64);
        Assert.Equal((FlatStopReason.Exception, 13), (r.Reason, r.Vector));
        Assert.Equal(0x1F80u, m.State.Mxcsr);
    }

    [Fact]
    public void Unmasked_simd_exception_raises_xm_or_ud_and_keeps_the_destination()
    {
        using var m = Machine(64);
        m.State.XmmLow(0) = BitConverter.SingleToUInt32Bits(1f);
        m.State.XmmLow(1) = 0; // divisor +0
        m.State.Mxcsr = 0x1F80 & ~0x200u; // ZM clear: zero-divide unmasked
        var r = Run(m, a => a.divss(xmm0, xmm1), 64);
        Assert.Equal((FlatStopReason.Exception, 19), (r.Reason, r.Vector));
        Assert.Equal(BitConverter.SingleToUInt32Bits(1f), (uint)m.State.XmmLow(0));
        Assert.NotEqual(0u, m.State.Mxcsr & 0x4); // ZE recorded

        m.State.Cr4 &= ~SseStateBits.Osxmmexcpt;
        m.State.Mxcsr = 0x1F80 & ~0x200u;
        r = Run(m, a => a.divss(xmm0, xmm1), 64);
        Assert.Equal((FlatStopReason.Exception, 6), (r.Reason, r.Vector));

        m.State.Mxcsr = 0x1F80; // masked: result +inf, ZE set, no fault
        r = Run(m, a => a.divss(xmm0, xmm1), 64);
        Assert.Equal(FlatStopReason.Halt, r.Reason);
        Assert.Equal(float.PositiveInfinity, BitConverter.UInt32BitsToSingle((uint)m.State.XmmLow(0)));
        Assert.Equal(0x1F84u, m.State.Mxcsr);
    }

    [Fact]
    public void Sse_without_osfxsr_is_undefined_and_with_ts_is_nm()
    {
        using var m = Machine(64);
        m.State.Cr4 &= ~SseStateBits.Osfxsr;
        var r = Run(m, a => a.pxor(xmm0, xmm0), 64);
        Assert.Equal((FlatStopReason.Exception, 6), (r.Reason, r.Vector));
        m.State.Cr4 |= SseStateBits.Osfxsr;
        m.State.Cr0 |= 1UL << 3;
        r = Run(m, a => a.addps(xmm0, xmm1), 64);
        Assert.Equal((FlatStopReason.Exception, 7), (r.Reason, r.Vector));
    }

    // ---- exits and determinism

    [Fact]
    public void Cpuid_is_an_exit()
    {
        using var m = Machine(64);
        var r = Run(m, a => a.cpuid(), 64);
        Assert.Equal(FlatStopReason.Exit, r.Reason);
        Assert.Equal(10u, r.ExitReason);
        Assert.Equal(Code0, m.State.Rip);
    }

    [Fact]
    public void Rdtsc_is_deterministic()
    {
        ulong Once()
        {
            using var m = Machine(64);
            Run(m, a =>
            {
                a.nop();
                a.xor(eax, eax);
                a.rdtsc();
            }, 64);
            return (m.State.R(2) << 32) | (uint)m.State.R(0);
        }
        Assert.Equal(Once(), Once());
    }
}

/// <summary>CR4 bits the SSE tests toggle (SDM Vol. 3A §2.5).</summary>
internal static class SseStateBits
{
    public const ulong Osfxsr = 1UL << 9;
    public const ulong Osxmmexcpt = 1UL << 10;
}
