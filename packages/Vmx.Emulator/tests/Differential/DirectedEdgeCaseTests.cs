using System.Text;
using Iced.Intel;

namespace VmmKit.Vmx.Emulator.Tests.Differential;

/// <summary>
/// Directed edge cases, host CPU against emulator: shift/rotate counts of 0, 1, width-1, width, beyond
/// the width and beyond the mask; AF/OF/CF corner values for every arithmetic instruction and size;
/// REP string instructions with RCX = 0 and with DF = 1; misaligned and page-crossing operands;
/// CMPXCHG8B/16B success and failure; DPPS/DPPD with NaN products.
/// </summary>
public sealed class DirectedEdgeCaseTests
{
    private static readonly int[] Sizes = [1, 2, 4, 8];
    private static readonly ulong[] Corners =
    [
        0, 1, 0x0F, 0x10, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF,
        0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000, ulong.MaxValue, 0x0F0F_0F0F_0F0F_0F0F,
    ];

    private static Register Gpr(int bytes, int index) => bytes switch
    {
        1 => index < 4 ? Register.AL + index : Register.R8L + (index - 8),
        2 => Register.AX + index,
        4 => Register.EAX + index,
        _ => Register.RAX + index,
    };

    private static MemoryOperand Scratch(int displacement) => new(Register.R15, displacement, 1);

    private static void AssertAll(DifferentialRunner runner, IEnumerable<DifferentialCase> cases)
    {
        var sb = new StringBuilder();
        int failures = 0, total = 0;
        foreach (var c in cases)
        {
            total++;
            string? r = runner.Check(c);
            if (r is not null && failures++ < 5)
                sb.AppendLine(r);
        }
        Assert.True(failures == 0, $"{failures} of {total} directed cases mismatch:\n{sb}");
    }

    [Fact]
    public void Shift_and_rotate_counts()
    {
        using var runner = new DifferentialRunner();
        Mnemonic[] mnemonics = [Mnemonic.Shl, Mnemonic.Shr, Mnemonic.Sar, Mnemonic.Rol, Mnemonic.Ror, Mnemonic.Rcl, Mnemonic.Rcr];
        int[] counts = [0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 255];
        AssertAll(runner, Cases());

        IEnumerable<DifferentialCase> Cases()
        {
            int seed = 0;
            foreach (var m in mnemonics)
            foreach (int size in Sizes)
            foreach (int count in counts)
            foreach (bool memory in new[] { false, true })
            {
                var reg = Gpr(size, 3);
                Code byCl = ShiftCode(m, size, cl: true);
                var list = new List<Instruction> { Instruction.Create(Code.Mov_r8_imm8, Register.CL, (uint)count) };
                list.Add(memory ? Instruction.Create(byCl, Scratch(0xFFD), Register.CL) : Instruction.Create(byCl, reg, Register.CL));
                var ins = list[^1];
                ulong undefined = UndefinedFlags.For(ins, count);
                yield return runner.Directed(seed++, list, s => s.Gpr[3] = Corners[seed % Corners.Length], undefined);
            }
        }
    }

    private static Code ShiftCode(Mnemonic m, int size, bool cl)
    {
        foreach (Code code in InstructionForms.IntegerCodes)
        {
            if (code.Mnemonic() != m)
                continue;
            var op = code.ToOpCode();
            if (op.OpCount == 2 && op.GetOpKind(1) == (cl ? OpCodeOperandKind.cl : OpCodeOperandKind.imm8)
                && op.GetOpKind(0) == size switch
                {
                    1 => OpCodeOperandKind.r8_or_mem,
                    2 => OpCodeOperandKind.r16_or_mem,
                    4 => OpCodeOperandKind.r32_or_mem,
                    _ => OpCodeOperandKind.r64_or_mem,
                })
            {
                return code;
            }
        }
        throw new InvalidOperationException($"{m} {size}");
    }

    [Fact]
    public void Double_shift_counts()
    {
        using var runner = new DifferentialRunner();
        AssertAll(runner, Cases());

        IEnumerable<DifferentialCase> Cases()
        {
            int seed = 100_000;
            foreach (bool left in new[] { true, false })
            foreach (int size in new[] { 2, 4, 8 })
            foreach (int count in new[] { 0, 1, 2, 15, 16, 31, 32, 33, 63, 64, 65 })
            {
                if (size == 2 && (count & 0x1F) > 16)
                    continue; // "If the count is greater than the operand size, the result is undefined."
                Code code = (left, size) switch
                {
                    (true, 2) => Code.Shld_rm16_r16_CL,
                    (true, 4) => Code.Shld_rm32_r32_CL,
                    (true, _) => Code.Shld_rm64_r64_CL,
                    (false, 2) => Code.Shrd_rm16_r16_CL,
                    (false, 4) => Code.Shrd_rm32_r32_CL,
                    _ => Code.Shrd_rm64_r64_CL,
                };
                var ins = Instruction.Create(code, Gpr(size, 3), Gpr(size, 6), Register.CL);
                var list = new List<Instruction> { Instruction.Create(Code.Mov_r8_imm8, Register.CL, (uint)count), ins };
                yield return runner.Directed(seed++, list, null, UndefinedFlags.For(ins, count));
            }
        }
    }

    [Fact]
    public void Arithmetic_flag_corners()
    {
        using var runner = new DifferentialRunner();
        Mnemonic[] binary = [Mnemonic.Add, Mnemonic.Adc, Mnemonic.Sub, Mnemonic.Sbb, Mnemonic.Cmp, Mnemonic.And, Mnemonic.Or, Mnemonic.Xor, Mnemonic.Test];
        AssertAll(runner, Cases());

        IEnumerable<DifferentialCase> Cases()
        {
            int seed = 200_000;
            foreach (int size in Sizes)
            foreach (var m in binary)
            {
                Code code = RegRegCode(m, size);
                foreach (ulong a in Corners)
                foreach (ulong b in new ulong[] { 0, 1, 0x0F, 0x80, ulong.MaxValue, 0x7FFF_FFFF_FFFF_FFFF })
                foreach (ulong carry in new ulong[] { 0, 1 })
                {
                    var ins = Instruction.Create(code, Gpr(size, 3), Gpr(size, 6));
                    yield return runner.Directed(seed++, [ins], s =>
                    {
                        s.Gpr[3] = a;
                        s.Gpr[6] = b;
                        s.Rflags = (s.Rflags & ~RflagsBits.CF) | carry;
                    }, UndefinedFlags.For(ins, -1));
                }
            }
            foreach (int size in Sizes)
            foreach (var m in new[] { Mnemonic.Inc, Mnemonic.Dec, Mnemonic.Neg, Mnemonic.Not })
            foreach (ulong a in Corners)
            {
                Code code = UnaryCode(m, size);
                var ins = Instruction.Create(code, Gpr(size, 3));
                yield return runner.Directed(seed++, [ins], s => s.Gpr[3] = a);
            }
        }
    }

    private static Code RegRegCode(Mnemonic m, int size)
    {
        var want = size switch
        {
            1 => OpCodeOperandKind.r8_or_mem,
            2 => OpCodeOperandKind.r16_or_mem,
            4 => OpCodeOperandKind.r32_or_mem,
            _ => OpCodeOperandKind.r64_or_mem,
        };
        foreach (Code code in InstructionForms.IntegerCodes)
        {
            var op = code.ToOpCode();
            if (code.Mnemonic() == m && op.OpCount == 2 && op.GetOpKind(0) == want
                && op.GetOpKind(1) is OpCodeOperandKind.r8_reg or OpCodeOperandKind.r16_reg or OpCodeOperandKind.r32_reg or OpCodeOperandKind.r64_reg)
            {
                return code;
            }
        }
        throw new InvalidOperationException($"{m} {size}");
    }

    private static Code UnaryCode(Mnemonic m, int size)
    {
        var want = size switch
        {
            1 => OpCodeOperandKind.r8_or_mem,
            2 => OpCodeOperandKind.r16_or_mem,
            4 => OpCodeOperandKind.r32_or_mem,
            _ => OpCodeOperandKind.r64_or_mem,
        };
        foreach (Code code in InstructionForms.IntegerCodes)
        {
            var op = code.ToOpCode();
            if (code.Mnemonic() == m && op.OpCount == 1 && op.GetOpKind(0) == want)
                return code;
        }
        throw new InvalidOperationException($"{m} {size}");
    }

    [Fact]
    public void Rep_strings_with_zero_count_and_both_directions()
    {
        using var runner = new DifferentialRunner();
        AssertAll(runner, Cases());

        IEnumerable<DifferentialCase> Cases()
        {
            int seed = 300_000;
            foreach (int kind in new[] { 0, 1, 2, 3, 4 })
            foreach (int size in Sizes)
            foreach (var rep in new[] { RepPrefixKind.Repe, RepPrefixKind.Repne })
            foreach (uint count in new uint[] { 0, 1, 2, 17 })
            foreach (bool down in new[] { false, true })
            foreach (int addressSize in new[] { 64, 32 })
            {
                Instruction ins = SequenceGenerator.StringInstruction(kind, size, addressSize, rep);
                var list = new List<Instruction>
                {
                    Instruction.Create(Code.Lea_r64_m, Register.RSI, Scratch(0x800 + 3)),
                    Instruction.Create(Code.Lea_r64_m, Register.RDI, Scratch(0xFF0 - (down ? 0 : 0x40))),
                    Instruction.Create(Code.Mov_r32_imm32, Register.ECX, count),
                    Instruction.Create(down ? Code.Std : Code.Cld),
                    ins,
                };
                // Make REPE/REPNE comparisons run a few iterations before stopping: equal prefixes.
                yield return runner.Directed(seed++, list, s =>
                {
                    for (int k = 0; k < 64; k++)
                        s.Scratch[0x1800 + 3 - 32 + k] = s.Scratch[0x1FF0 - (down ? 0 : 0x40) - 32 + k];
                });
            }
        }
    }

    [Fact]
    public void Misaligned_and_page_crossing_operands()
    {
        using var runner = new DifferentialRunner();
        AssertAll(runner, Cases());

        IEnumerable<DifferentialCase> Cases()
        {
            int seed = 400_000;
            foreach (int size in Sizes)
            foreach (int offset in new[] { -15, -8, -7, -4, -3, -2, -1, 0, 1 })
            foreach (var m in new[] { Mnemonic.Mov, Mnemonic.Add, Mnemonic.Xchg, Mnemonic.Cmpxchg, Mnemonic.Xadd, Mnemonic.Btc })
            {
                int disp = 0x1000 + offset; // R15 + 0x1000 is a page boundary
                Code code = MemRegCode(m, size);
                int regSize = m == Mnemonic.Btc && size == 1 ? 2 : size;
                var ins = Instruction.Create(code, Scratch(disp), Gpr(regSize, 3));
                var list = new List<Instruction>();
                if (m == Mnemonic.Btc)
                    list.Add(Instruction.Create(Code.Mov_rm64_imm32, Register.RBX, (size * 8) - 1 + 8 * offset));
                list.Add(ins);
                yield return runner.Directed(seed++, list, null, UndefinedFlags.For(ins, -1));
            }
            foreach (int offset in new[] { -1, -3, -8, -15, 0 })
            {
                var load = Instruction.Create(Code.Movdqu_xmm_xmmm128, Register.XMM3, Scratch(0x1000 + offset));
                var store = Instruction.Create(Code.Movups_xmmm128_xmm, Scratch(0x2000 + offset), Register.XMM5);
                yield return runner.Directed(seed++, [load, store]);
            }
        }
    }

    private static Code MemRegCode(Mnemonic m, int size)
    {
        var want = size switch
        {
            1 => OpCodeOperandKind.r8_or_mem,
            2 => OpCodeOperandKind.r16_or_mem,
            4 => OpCodeOperandKind.r32_or_mem,
            _ => OpCodeOperandKind.r64_or_mem,
        };
        foreach (Code code in InstructionForms.IntegerCodes)
        {
            var op = code.ToOpCode();
            if (code.Mnemonic() == m && op.OpCount == 2 && op.GetOpKind(0) == want
                && op.GetOpKind(1) is OpCodeOperandKind.r8_reg or OpCodeOperandKind.r16_reg or OpCodeOperandKind.r32_reg or OpCodeOperandKind.r64_reg)
            {
                return code;
            }
        }
        if (m == Mnemonic.Btc && size == 1)
            return MemRegCode(m, 2);
        throw new InvalidOperationException($"{m} {size}");
    }

    [Fact]
    public void Cmpxchg8b_and_16b_success_and_failure()
    {
        using var runner = new DifferentialRunner();
        AssertAll(runner, Cases());

        IEnumerable<DifferentialCase> Cases()
        {
            int seed = 500_000;
            foreach (bool wide in new[] { false, true })
            foreach (bool equal in new[] { false, true })
            foreach (bool locked in new[] { false, true })
            foreach (int disp in new[] { 0x100, 0x1000 - 8, 0x1000 - 16, 0x1000 - 4 })
            {
                if (wide && (disp & 15) != 0)
                    continue; // misaligned CMPXCHG16B is #GP(0): an emulator-only case
                var mem = Scratch(disp);
                var ins = Instruction.Create(wide ? Code.Cmpxchg16b_m128 : Code.Cmpxchg8b_m64, mem);
                ins.HasLockPrefix = locked;
                var list = new List<Instruction>();
                if (equal)
                {
                    list.Add(Instruction.Create(wide ? Code.Mov_r64_rm64 : Code.Mov_r32_rm32, wide ? Register.RAX : Register.EAX, mem));
                    list.Add(Instruction.Create(wide ? Code.Mov_r64_rm64 : Code.Mov_r32_rm32, wide ? Register.RDX : Register.EDX, Scratch(disp + (wide ? 8 : 4))));
                }
                list.Add(ins);
                yield return runner.Directed(seed++, list);
            }
        }
    }

    // Which NaN each lane of a dot product gets: every subset of lanes holding a NaN (each its own payload, quiet or
    // signalling), every product and write mask. Intel and AMD parts differ here (DotProduct's summary).
    [Fact]
    public void Dot_products_with_nan_products()
    {
        using var runner = new DifferentialRunner();
        AssertAll(runner, Cases());

        IEnumerable<DifferentialCase> Cases()
        {
            int seed = 600_000;
            foreach (bool wide in new[] { false, true })
            for (int nans = 1; nans < (wide ? 4 : 16); nans++)
            foreach (bool signalling in new[] { false, true })
            foreach (int imm in wide ? new[] { 0x33, 0x13, 0x21 } : new[] { 0xFF, 0x9E, 0x3C, 0xF1 })
            {
                int lanes = wide ? 2 : 4;
                var list = new List<Instruction>
                {
                    Instruction.Create(wide ? Code.Dppd_xmm_xmmm128_imm8 : Code.Dpps_xmm_xmmm128_imm8, Register.XMM1, Register.XMM2, imm),
                };
                yield return runner.Directed(seed++, list, state =>
                {
                    UInt128 d = 0, one = 0;
                    for (int k = 0; k < lanes; k++)
                    {
                        int shift = k * (wide ? 64 : 32);
                        ulong lane = (nans >> k & 1) == 0
                            ? (wide ? 0x3FF0_0000_0000_0000UL : 0x3F80_0000UL)                                // 1.0
                            : wide ? (signalling ? 0x7FF4_0000_0000_0000UL : 0x7FF8_0000_0000_0000UL) | (uint)(k + 1)
                                   : (signalling ? 0x7FA0_0000UL : 0x7FC0_0000UL) | (uint)(k + 1);
                        d |= (UInt128)lane << shift;
                        one |= (UInt128)(wide ? 0x3FF0_0000_0000_0000UL : 0x3F80_0000UL) << shift;
                    }

                    state.Xmm[1] = d;
                    state.Xmm[2] = one;
                    state.Mxcsr = 0x1F80;
                });
            }
        }
    }
}
