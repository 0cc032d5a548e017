using Iced.Intel;
using VmmKit.Vmx.Emulator.Engine;
using VmmKit.Vmx.Emulator.Testing;
using static Iced.Intel.AssemblerRegisters;
using RflagsBits = VmmKit.Vmx.Emulator.Engine.RflagsBits;

namespace VmmKit.Vmx.Emulator.Tests.Engine;

/// <summary>Directed edge cases of the general-purpose instructions (expected values from the SDM's pseudo-code).</summary>
public unsafe class InstructionTests
{
    private const ulong CF = RflagsBits.CF, PF = RflagsBits.PF, AF = RflagsBits.AF, ZF = RflagsBits.ZF, SF = RflagsBits.SF, OF = RflagsBits.OF;

    private static (GuestRunner G, FlatRunResult R) Run(Action<Assembler> code, int bitness = 64, ulong flags = 0x2)
    {
        var g = new GuestRunner(bitness);
        g.S.SetRflags(flags);
        var r = g.Run(code);
        return (g, r);
    }

    [Fact]
    public void Add_sets_overflow_and_adjust_at_0x7F_plus_1()
    {
        var (g, r) = Run(a => { a.mov(al, 0x7F); a.add(al, 1); });
        using (g)
        {
            Assert.Equal(FlatStopReason.Halt, r.Reason);
            Assert.Equal(0x80UL, g.Reg(0) & 0xFF);
            Assert.Equal(OF | AF | SF, g.Flags & RflagsBits.Arith);
        }
    }

    [Fact]
    public void Sub_borrow_and_overflow_at_0x80_minus_1()
    {
        var (g, _) = Run(a => { a.mov(eax, 0x80000000); a.sub(eax, 1); });
        using (g) Assert.Equal(OF | AF | PF, g.Flags & RflagsBits.Arith);
        var (g2, _) = Run(a => { a.xor(ecx, ecx); a.sub(ecx, 1); });
        using (g2)
        {
            Assert.Equal(0xFFFF_FFFFUL, g2.Reg(1));
            Assert.Equal(CF | AF | SF | PF, g2.Flags & RflagsBits.Arith);
        }
    }

    [Fact]
    public void Adc_and_sbb_chain_carry_through_64_bits()
    {
        var (g, _) = Run(a =>
        {
            a.mov(rax, -1L); a.mov(rdx, 0); a.add(rax, 1); a.adc(rdx, 0);   // 128-bit increment
            a.mov(rbx, 0); a.mov(rcx, 0); a.sub(rbx, 1); a.sbb(rcx, 0);      // 128-bit decrement of zero
        });
        using (g)
        {
            Assert.Equal(0UL, g.Reg(0));
            Assert.Equal(1UL, g.Reg(2));
            Assert.Equal(ulong.MaxValue, g.Reg(3));
            Assert.Equal(ulong.MaxValue, g.Reg(1));
            Assert.Equal(CF, g.Flags & CF);
        }
    }

    [Fact]
    public void Inc_and_dec_keep_the_carry_flag()
    {
        var (g, _) = Run(a => { a.stc(); a.mov(eax, -1); a.inc(eax); a.mov(ecx, 0); a.dec(ecx); });
        using (g)
        {
            Assert.Equal(CF | SF | AF | PF, g.Flags & RflagsBits.Arith);
        }
    }

    [Fact]
    public void Shift_by_zero_changes_no_flags()
    {
        var (g, _) = Run(a => { a.mov(eax, 5); a.cmp(eax, 6); a.mov(cl, 0); a.shl(eax, cl); }, flags: 0x2);
        using (g)
        {
            Assert.Equal(5UL, g.Reg(0));
            Assert.Equal(CF | SF | AF | PF, g.Flags & RflagsBits.Arith); // from cmp 5, 6
        }
    }

    [Fact]
    public void Byte_shifts_beyond_the_width()
    {
        var (g, _) = Run(a => { a.mov(al, 0x81); a.mov(cl, 9); a.shl(al, cl); a.mov(bl, 0x81); a.shr(bl, 8); a.mov(dl, 0x80); a.sar(dl, 20); });
        using (g)
        {
            Assert.Equal(0UL, g.Reg(0) & 0xFF);
            Assert.Equal(0UL, g.Reg(3) & 0xFF);
            Assert.Equal(0xFFUL, g.Reg(2) & 0xFF);
            Assert.Equal(CF, g.Flags & CF); // SAR of a negative byte by 20 shifts out ones
        }
    }

    [Fact]
    public void Rotates_through_carry_use_width_plus_one()
    {
        // RCL r8 by 9 is a full rotation through CF: value and CF unchanged.
        var (g, _) = Run(a => { a.stc(); a.mov(al, 0x5A); a.rcl(al, 9); a.mov(bl, 0x01); a.clc(); a.rcr(bl, 1); });
        using (g)
        {
            Assert.Equal(0x5AUL, g.Reg(0) & 0xFF);
            Assert.Equal(0UL, g.Reg(3) & 0xFF);
            Assert.Equal(CF, g.Flags & CF);
        }
    }

    [Fact]
    public void Rol_ror_set_carry_and_overflow()
    {
        var (g, _) = Run(a => { a.mov(eax, 0x80000000); a.rol(eax, 1); });
        using (g)
        {
            Assert.Equal(1UL, g.Reg(0));
            Assert.Equal(CF | OF, g.Flags & (CF | OF));
        }
    }

    [Fact]
    public void Shld_and_shrd_concatenate()
    {
        var (g, _) = Run(a => { a.mov(eax, 0x12345678); a.mov(edx, 0x9ABCDEF0); a.shld(eax, edx, 8); a.mov(ebx, 0x12345678); a.shrd(ebx, edx, 4); });
        using (g)
        {
            Assert.Equal(0x3456789AUL, g.Reg(0));
            Assert.Equal(0x01234567UL, g.Reg(3));
        }
    }

    [Fact]
    public void Division_by_zero_and_quotient_overflow_raise_DE()
    {
        foreach (Action<Assembler> code in new Action<Assembler>[]
        {
            a => { a.xor(ecx, ecx); a.div(ecx); },
            a => { a.mov(edx, 1); a.xor(eax, eax); a.mov(ecx, 1); a.div(ecx); },
            a => { a.mov(eax, int.MinValue); a.cdq(); a.mov(ecx, -1); a.idiv(ecx); },
            a => { a.mov(rax, long.MinValue); a.cqo(); a.mov(rcx, -1L); a.idiv(rcx); },
            a => { a.mov(ax, 0x8000); a.mov(cl, 0xFF); a.idiv(cl); },
        })
        {
            var (g, r) = Run(code);
            using (g)
            {
                Assert.Equal(FlatStopReason.Exception, r.Reason);
                Assert.Equal(ExceptionVector.DE, r.Vector);
            }
        }
    }

    [Fact]
    public void Division_results()
    {
        var (g, _) = Run(a => { a.mov(rdx, 1); a.mov(rax, 5); a.mov(rcx, 3); a.div(rcx); a.mov(r8, rax); a.mov(r9, rdx); a.mov(eax, -7); a.cdq(); a.mov(ecx, 2); a.idiv(ecx); });
        using (g)
        {
            Assert.Equal(0x5555555555555557UL, g.Reg(8)); // (2^64 + 5) / 3
            Assert.Equal(0UL, g.Reg(9));
            Assert.Equal(0xFFFFFFFDUL, g.Reg(0));            // -7 / 2 = -3 (truncates toward zero)
            Assert.Equal(0xFFFFFFFFUL, g.Reg(2));            // remainder -1
        }
    }

    [Fact]
    public void Multiplication_overflow_flags()
    {
        var (g, _) = Run(a => { a.mov(rax, 1L << 40); a.mov(rcx, 1L << 30); a.mul(rcx); });
        using (g)
        {
            Assert.Equal(1UL << 6, g.Reg(2));
            Assert.Equal(0UL, g.Reg(0));
            Assert.Equal(CF | OF, g.Flags & (CF | OF));
        }
        var (g2, _) = Run(a => { a.mov(eax, -3); a.imul(eax, eax, 5); });
        using (g2)
        {
            Assert.Equal(0xFFFF_FFF1UL, g2.Reg(0));
            Assert.Equal(0UL, g2.Flags & (CF | OF));
        }
    }

    [Fact]
    public void Rep_movs_with_zero_count_does_nothing()
    {
        var (g, _) = Run(a => { a.mov(rsi, 0x20000); a.mov(rdi, 0x30000); a.xor(ecx, ecx); a.rep.movsb(); });
        using (g)
        {
            Assert.Equal(0x20000UL, g.Reg(6));
            Assert.Equal(0x30000UL, g.Reg(7));
        }
    }

    [Fact]
    public void Rep_movs_backwards_with_DF()
    {
        var (g, _) = Run(a =>
        {
            a.mov(rdi, 0x20000); a.mov(eax, 0x11223344); a.mov(ecx, 4); a.rep.stosd();
            a.std(); a.mov(rsi, 0x2000C); a.mov(rdi, 0x3000C); a.mov(ecx, 4); a.rep.movsd(); a.cld();
        });
        using (g)
        {
            Assert.Equal(0x1FFFCUL, g.Reg(6));
            Assert.Equal(0x2FFFCUL, g.Reg(7));
            Assert.Equal(0x11223344u, BitConverter.ToUInt32(g.Machine.Memory.Slice(0x30000, 4)));
            Assert.Equal(0x11223344u, BitConverter.ToUInt32(g.Machine.Memory.Slice(0x3000C, 4)));
        }
    }

    [Fact]
    public void Repne_scasb_finds_the_terminator()
    {
        var (g, _) = Run(a =>
        {
            a.mov(rdi, 0x20000); a.mov(__dword_ptr[rdi], 0x00434241); a.xor(eax, eax); a.mov(rcx, -1L); a.repne.scasb();
        });
        using (g)
        {
            Assert.Equal(0x20004UL, g.Reg(7));
            Assert.Equal(ulong.MaxValue - 4, g.Reg(1));
            Assert.Equal(ZF, g.Flags & ZF);
        }
    }

    [Fact]
    public void Page_crossing_access_reads_and_writes_both_pages()
    {
        var (g, _) = Run(a => { a.mov(rbx, 0x20FFE); a.mov(__dword_ptr[rbx], 0x44332211); a.mov(ecx, __dword_ptr[rbx]); });
        using (g)
        {
            Assert.Equal(0x44332211UL, g.Reg(1));
            Assert.Equal(0x22, g.Machine.Memory[0x20FFF]);
            Assert.Equal(0x33, g.Machine.Memory[0x21000]);
        }
    }

    [Fact]
    public void Page_crossing_write_past_the_end_of_memory_writes_nothing()
    {
        var (g, r) = Run(a => { a.mov(rbx, (1L << 20) - 2); a.mov(__qword_ptr[rbx], -1); });
        using (g)
        {
            Assert.Equal(FlatStopReason.Exit, r.Reason);
            Assert.Equal(BasicExitReason.EptViolation, r.ExitReason);
            Assert.Equal(1UL << 20, r.GuestPhysical);
            Assert.Equal(0, g.Machine.Memory[(1 << 20) - 1]);
        }
    }

    [Theory]
    [InlineData(64, 8)]
    [InlineData(32, 4)]
    [InlineData(16, 2)]
    public void Call_push_and_ret_use_the_mode_stack_width(int bitness, int width)
    {
        var g = new GuestRunner(bitness);
        using (g)
        {
            var r = g.Run(a =>
            {
                var f = a.CreateLabel();
                var done = a.CreateLabel();
                if (bitness == 64) { a.push(rax); a.pop(rbx); }
                else if (bitness == 32) { a.push(eax); a.pop(ebx); }
                else { a.push(ax); a.pop(bx); }
                a.call(f);
                a.jmp(done);
                a.Label(ref f);
                if (bitness == 64) a.mov(rcx, rsp); else if (bitness == 32) a.mov(ecx, esp); else a.mov(cx, sp);
                a.ret();
                a.Label(ref done);
            });
            Assert.Equal(FlatStopReason.Halt, r.Reason);
            ulong mask = bitness == 16 ? 0xFFFFUL : ulong.MaxValue;
            Assert.Equal((GuestRunner.StackTop - (ulong)width) & mask, g.Reg(1) & mask);
            Assert.Equal(GuestRunner.StackTop & mask, g.Reg(4) & mask);
        }
    }

    [Fact]
    public void Self_modifying_code_is_seen_by_the_next_instruction()
    {
        // Overwrites the immediate of the following "mov eax, imm32" (B8 imm32) inside the same block.
        var (g, _) = Run(a =>
        {
            var target = a.CreateLabel();
            a.lea(rbx, __[target]);
            a.mov(__dword_ptr[rbx + 1], 0x1234);
            a.Label(ref target);
            a.mov(eax, 0x1111);
        });
        using (g) Assert.Equal(0x1234UL, g.Reg(0));
    }

    [Fact]
    public void Code_changed_between_runs_is_redecoded()
    {
        using var g = new GuestRunner();
        g.Run(a => a.mov(eax, 1));
        Assert.Equal(1UL, g.Reg(0));
        g.Run(a => a.mov(eax, 2));
        Assert.Equal(2UL, g.Reg(0));
    }

    [Fact]
    public void Cmpxchg_xadd_bswap()
    {
        var (g, _) = Run(a =>
        {
            a.mov(rbx, 0x20000); a.mov(__dword_ptr[rbx], 5);
            a.mov(eax, 5); a.mov(ecx, 9); a.@lock.cmpxchg(__dword_ptr[rbx], ecx);   // equal: [rbx] = 9
            a.mov(eax, 7); a.cmpxchg(__dword_ptr[rbx], ecx);                        // not equal: eax = 9
            a.mov(edx, 1); a.xadd(__dword_ptr[rbx], edx);                          // [rbx] = 10, edx = 9
            a.mov(esi, 0x11223344); a.bswap(esi);
        });
        using (g)
        {
            Assert.Equal(9UL, g.Reg(0));
            Assert.Equal(9UL, g.Reg(2));
            Assert.Equal(10u, BitConverter.ToUInt32(g.Machine.Memory.Slice(0x20000, 4)));
            Assert.Equal(0x44332211UL, g.Reg(6));
        }
    }

    [Fact]
    public void Bit_string_with_negative_register_offset()
    {
        var (g, _) = Run(a =>
        {
            a.mov(rbx, 0x20010); a.mov(rax, -1L); a.bts(__qword_ptr[rbx], rax); // bit 63 of the qword at 0x20008
            a.mov(ecx, 35); a.bt(__dword_ptr[rbx], ecx);                          // bit 3 of dword at 0x20014: 0
        });
        using (g)
        {
            Assert.Equal(0x80, g.Machine.Memory[0x2000F]);
            Assert.Equal(0UL, g.Flags & CF);
        }
    }

    [Fact]
    public void Bit_scans_and_counts()
    {
        var (g, _) = Run(a =>
        {
            a.mov(eax, 0x00F0); a.bsf(ecx, eax); a.bsr(edx, eax); a.popcnt(ebx, eax);
            a.mov(esi, 77); a.xor(edi, edi); a.bsf(esi, edi);   // zero source: ZF = 1, destination kept
            a.tzcnt(r8d, edi); a.lzcnt(r9d, eax);
        });
        using (g)
        {
            Assert.Equal(4UL, g.Reg(1));
            Assert.Equal(7UL, g.Reg(2));
            Assert.Equal(4UL, g.Reg(3));
            Assert.Equal(77UL, g.Reg(6));
            Assert.Equal(32UL, g.Reg(8));
            Assert.Equal(24UL, g.Reg(9));
        }
    }

    [Fact]
    public void Bcd_adjust_after_addition_in_32_bit_mode()
    {
        var (g, _) = Run(a => { a.mov(al, 0x19); a.add(al, 0x28); a.daa(); a.mov(bl, 0x99); a.mov(ah, 0); a.xchg(al, bl); a.add(al, 1); a.daa(); }, bitness: 32);
        using (g)
        {
            Assert.Equal(0x00UL, g.Reg(0) & 0xFF);   // 99 + 1 = 100 -> AL 00, CF
            Assert.Equal(0x47UL, g.Reg(3) & 0xFF);   // 19 + 28 = 47
            Assert.Equal(CF, g.Flags & CF);
        }
    }

    [Fact]
    public void Bcd_instructions_are_UD_in_64_bit_mode()
    {
        var g = new GuestRunner(64);
        using (g)
        {
            new byte[] { 0x27, 0xF4 }.CopyTo(g.Machine.Memory.Slice((int)GuestRunner.CodeAddress)); // daa; hlt
            g.S.Rip = GuestRunner.CodeAddress;
            var r = g.Machine.Run();
            Assert.Equal(FlatStopReason.Exception, r.Reason);
            Assert.Equal(ExceptionVector.UD, r.Vector);
        }
    }

    [Fact]
    public void Enter_and_leave_build_a_frame()
    {
        var (g, _) = Run(a => { a.mov(rbp, 0x1234); a.enter(32, 0); a.mov(rcx, rbp); a.mov(rdx, rsp); a.leave(); });
        using (g)
        {
            Assert.Equal(GuestRunner.StackTop - 8, g.Reg(1));
            Assert.Equal(GuestRunner.StackTop - 8 - 32, g.Reg(2));
            Assert.Equal(0x1234UL, g.Reg(5));
            Assert.Equal(GuestRunner.StackTop, g.Reg(4));
        }
    }

    [Fact]
    public void Pushf_popf_lahf_sahf()
    {
        var (g, _) = Run(a => { a.stc(); a.std(); a.pushfq(); a.pop(rdi); a.push(0x2); a.popfq(); a.mov(ah, 0xD5); a.sahf(); a.lahf(); a.mov(ebx, eax); });
        using (g)
        {
            Assert.Equal(RflagsBits.DF | CF | 2, g.Reg(7));
            Assert.Equal(0xD7UL, (g.Reg(3) >> 8) & 0xFF);
            Assert.Equal(0UL, g.Flags & RflagsBits.DF);
        }
    }

    [Fact]
    public void Setcc_cmovcc_loop_jrcxz()
    {
        var (g, _) = Run(a =>
        {
            var top = a.CreateLabel();
            var skip = a.CreateLabel();
            a.mov(ecx, 10); a.xor(eax, eax);
            a.Label(ref top); a.add(eax, 2); a.loop(top);
            a.cmp(eax, 20); a.sete(bl); a.mov(edx, 99); a.mov(esi, 5); a.cmovne(edx, esi);
            a.jrcxz(skip); a.mov(edi, 1); a.Label(ref skip);
        });
        using (g)
        {
            Assert.Equal(20UL, g.Reg(0));
            Assert.Equal(1UL, g.Reg(3) & 0xFF);
            Assert.Equal(99UL, g.Reg(2));
            Assert.Equal(0UL, g.Reg(7));
        }
    }

    [Fact]
    public void Rdtsc_is_the_instruction_count_and_runs_are_deterministic()
    {
        ulong[] Once()
        {
            var (g, r) = Run(a => { a.mov(ecx, 1000); var t = a.CreateLabel(); a.Label(ref t); a.imul(eax, ecx, 7); a.xor(ebx, eax); a.loop(t); a.rdtsc(); });
            using (g) return new[] { g.Reg(0), g.Reg(2), g.Reg(3), g.S.InstructionsRetired, r.InstructionsExecuted };
        }
        ulong[] a1 = Once(), a2 = Once();
        Assert.Equal(a1, a2);
        Assert.Equal(1UL + 3000, a1[0]); // mov + 1000 * 3 instructions retired before rdtsc
    }

    [Fact]
    public void Sixteen_bit_code_wraps_registers_and_addresses()
    {
        var (g, _) = Run(a => { a.mov(ax, 0xFFFF); a.add(ax, 2); a.mov(bx, 0xFFFF); a.mov(__word_ptr[bx + 3], 0x4242); }, bitness: 16);
        using (g)
        {
            Assert.Equal(1UL, g.Reg(0) & 0xFFFF);
            Assert.Equal(CF, g.Flags & CF);
            Assert.Equal(0x42, g.Machine.Memory[2]); // (0xFFFF + 3) & 0xFFFF = 2
        }
    }

    [Fact]
    public void Cpuid_and_io_stop_with_an_exit()
    {
        var (g, r) = Run(a => { a.cpuid(); });
        using (g)
        {
            Assert.Equal(FlatStopReason.Exit, r.Reason);
            Assert.Equal(BasicExitReason.Cpuid, r.ExitReason);
        }
        var (g2, r2) = Run(a => { a.mov(dx, 0x3F8); a.@out(dx, al); }, bitness: 32);
        using (g2)
        {
            Assert.Equal(BasicExitReason.IoInstruction, r2.ExitReason);
            Assert.Equal(0x3F8UL << 16, r2.Qualification);
        }
    }

    [Fact]
    public void Instruction_crossing_a_page_boundary_and_the_code_after_it()
    {
        var g = new GuestRunner(64);
        using (g)
        {
            byte[] code = { 0xB8, 0x44, 0x33, 0x22, 0x11, 0xBB, 0x01, 0x00, 0x00, 0x00, 0xF4 }; // mov eax, imm; mov ebx, 1; hlt
            code.CopyTo(g.Machine.Memory.Slice(0x1FFE));
            g.S.Rip = 0x1FFE;
            var r = g.Machine.Run();
            Assert.Equal(FlatStopReason.Halt, r.Reason);
            Assert.Equal(0x11223344UL, g.Reg(0));
            Assert.Equal(1UL, g.Reg(3));
            // Rewriting the second page re-decodes the crossing instruction.
            g.Machine.Memory[0x2000] = 0x55;
            g.S.Rip = 0x1FFE;
            g.Machine.Run();
            Assert.Equal(0x11225544UL, g.Reg(0));
        }
    }

    [Fact]
    public void Segment_loads_in_protected_mode_use_the_gdt()
    {
        var g = new GuestRunner(32);
        using (g)
        {
            // GDT at 0x3000: null, null, code (0x10), data with base 0x10000 (0x18).
            BitConverter.GetBytes(0x00CF9A000000FFFFUL).CopyTo(g.Machine.Memory.Slice(0x3010));
            BitConverter.GetBytes(0x00CF92010000FFFFUL).CopyTo(g.Machine.Memory.Slice(0x3018));
            g.S.GdtrBase = 0x3000;
            g.S.GdtrLimit = 0x1F;
            var r = g.Run(a =>
            {
                a.mov(eax, 0x18); a.mov(ds, ax); a.mov(__dword_ptr[0x100], 0x5A5A5A5A);
                a.push(0x18); a.pop(es); a.mov(bx, es);
                a.mov(eax, 0x20); a.mov(fs, ax); // beyond the GDT limit: #GP(0x20)
            });
            Assert.Equal(FlatStopReason.Exception, r.Reason);
            Assert.Equal(ExceptionVector.GP, r.Vector);
            Assert.Equal(0x20u, r.ErrorCode);
            Assert.Equal(0x5A5A5A5Au, BitConverter.ToUInt32(g.Machine.Memory.Slice(0x10100, 4)));
            Assert.Equal(0x18UL, g.Reg(3) & 0xFFFF);
            Assert.Equal(0x10000UL, g.S.Es.Base);
            Assert.Equal(GuestRunner.StackTop, g.Reg(4));
        }
    }

    [Fact]
    public void Segment_loads_in_real_mode_scale_the_selector()
    {
        var (g, _) = Run(a => { a.mov(ax, 0x1234); a.mov(ds, ax); a.mov(__byte_ptr[0x10], 0x77); }, bitness: 16);
        using (g) Assert.Equal(0x77, g.Machine.Memory[0x12340 + 0x10]);
    }
}
