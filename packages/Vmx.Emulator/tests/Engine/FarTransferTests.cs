using Iced.Intel;
using VmmKit.Vmx.Emulator.Engine;
using VmmKit.Vmx.Emulator.Testing;
using static Iced.Intel.AssemblerRegisters;
using RflagsBits = VmmKit.Vmx.Emulator.Engine.RflagsBits;

namespace VmmKit.Vmx.Emulator.Tests.Engine;

/// <summary>LGDT/LIDT/SGDT/SIDT, far JMP/CALL/RET and IRET (expected values from the SDM's pseudo-code).</summary>
public unsafe class FarTransferTests
{
    private const ulong Gdt = 0x3000, Idt = 0x4000, Handler = 0x5000;
    private const ulong Code32 = 0x00CF9A000000FFFFUL, Data32 = 0x00CF92000000FFFFUL, Code64 = 0x00AF9A000000FFFFUL;

    private static void Put(GuestRunner g, ulong at, ulong value) => BitConverter.GetBytes(value).CopyTo(g.Machine.Memory.Slice((int)at));

    /// <summary>GDT: null, 0x08 code, 0x10 data, 0x18 not-present code, 0x20 64-bit code; pseudo-descriptor at 0x2000.</summary>
    private static void WriteGdt(GuestRunner g)
    {
        Put(g, Gdt + 0x08, Code32);
        Put(g, Gdt + 0x10, Data32);
        Put(g, Gdt + 0x18, Code32 & ~(1UL << 47));
        Put(g, Gdt + 0x20, Code64);
        Put(g, 0x2000, 0x27 | (Gdt << 16));
    }

    [Fact]
    public void Lgdt_far_jmp_and_data_segment_reload_use_the_new_gdt()
    {
        using var g = new GuestRunner(32);
        WriteGdt(g);
        g.S.GdtrLimit = 0;
        var r = g.Run(a =>
        {
            a.db(0x0F, 0x01, 0x15, 0x00, 0x20, 0x00, 0x00);       // 0x1000 lgdt [0x2000]
            a.db(0xEA, 0x0E, 0x10, 0x00, 0x00, 0x08, 0x00);       // 0x1007 ljmp 0x08:0x100E
            a.mov(eax, 0x10); a.mov(ds, ax); a.mov(ss, ax);       // 0x100E
        });
        Assert.Equal(FlatStopReason.Halt, r.Reason);
        Assert.Equal(Gdt, g.S.GdtrBase);
        Assert.Equal(0x27u, g.S.GdtrLimit);
        Assert.Equal((ushort)0x08, g.S.Cs.Selector);
        Assert.Equal((ushort)0x10, g.S.Ds.Selector);
        Assert.Equal(32, g.Machine.Bitness);
    }

    [Fact]
    public void Sgdt_and_sidt_store_what_lgdt_and_lidt_loaded()
    {
        using var g = new GuestRunner(32);
        Put(g, 0x2000, 0x1234 | (0xFEDC_BA98UL << 16));
        Put(g, 0x2010, 0x07FF | (0x0012_3456UL << 16));
        var r = g.Run(a =>
        {
            a.lgdt(__[0x2000]); a.lidt(__[0x2010]);
            a.sgdt(__[0x2100]); a.sidt(__[0x2110]);
        });
        Assert.Equal(FlatStopReason.Halt, r.Reason);
        Assert.Equal(0xFEDC_BA98UL, g.S.GdtrBase);
        Assert.Equal(0x0012_3456UL, g.S.IdtrBase);
        Assert.Equal(0x07FFu, g.S.IdtrLimit);
        Assert.True(g.Machine.Memory.Slice(0x2000, 6).SequenceEqual(g.Machine.Memory.Slice(0x2100, 6)));
        Assert.True(g.Machine.Memory.Slice(0x2010, 6).SequenceEqual(g.Machine.Memory.Slice(0x2110, 6)));
    }

    [Fact]
    public void Lgdt_with_16_bit_operand_size_loads_a_24_bit_base()
    {
        using var g = new GuestRunner(32);
        Put(g, 0x2000, 0x00FF | (0xFEDC_BA98UL << 16));
        g.Run(a => a.db(0x66, 0x0F, 0x01, 0x15, 0x00, 0x20, 0x00, 0x00)); // o16 lgdt [0x2000]
        Assert.Equal(0xDC_BA98UL, g.S.GdtrBase);
        Assert.Equal(0xFFu, g.S.GdtrLimit);
    }

    [Fact]
    public void Lgdt_and_sgdt_in_64_bit_mode_use_an_8_byte_base()
    {
        using var g = new GuestRunner(64);
        const ulong Base = 0xFFFF_8000_1234_5678UL;
        Put(g, 0x2000, 0xFFFF | (Base << 16));
        BitConverter.GetBytes((ushort)(Base >> 48)).CopyTo(g.Machine.Memory.Slice(0x2008));
        var r = g.Run(a => { a.lgdt(__[0x2000]); a.sgdt(__[0x2100]); });
        Assert.Equal(FlatStopReason.Halt, r.Reason);
        Assert.Equal(Base, g.S.GdtrBase);
        Assert.True(g.Machine.Memory.Slice(0x2000, 10).SequenceEqual(g.Machine.Memory.Slice(0x2100, 10)));
    }

    [Fact]
    public void Lgdt_at_cpl_3_raises_general_protection()
    {
        using var g = new GuestRunner(32);
        g.S.Cs.Selector |= 3;
        var r = g.Run(a => a.lgdt(__[0x2000]));
        Assert.Equal(FlatStopReason.Exception, r.Reason);
        Assert.Equal(ExceptionVector.GP, r.Vector);
        Assert.Equal(0u, r.ErrorCode);
        Assert.Equal(GuestRunner.CodeAddress, g.S.Rip);
    }

    [Fact]
    public void Exception_through_the_idt_returns_with_iretd()
    {
        using var g = new GuestRunner(32);
        WriteGdt(g);
        // IDT vector 6 (#UD): 32-bit interrupt gate to 0x08:Handler; the handler skips the 2-byte ud2 and returns.
        Put(g, Idt + 6 * 8, (Handler & 0xFFFF) | (0x08UL << 16) | (0x8EUL << 40) | ((Handler >> 16) << 48));
        Put(g, 0x2010, 0x7F | (Idt << 16));
        new byte[] { 0x83, 0x04, 0x24, 0x02, 0xCF }.CopyTo(g.Machine.Memory.Slice((int)Handler)); // add dword [esp], 2; iretd
        g.S.SetRflags(0x202 | RflagsBits.CF);
        var r = g.Run(a =>
        {
            a.db(0x0F, 0x01, 0x15, 0x00, 0x20, 0x00, 0x00); // 0x1000 lgdt [0x2000]
            a.db(0xEA, 0x0E, 0x10, 0x00, 0x00, 0x08, 0x00); // 0x1007 ljmp 0x08:0x100E
            a.db(0x0F, 0x01, 0x1D, 0x10, 0x20, 0x00, 0x00); // 0x100E lidt [0x2010]
            a.ud2();                                          // 0x1015
            a.mov(ebx, 0x77);
        });
        Assert.Equal(FlatStopReason.Exception, r.Reason);
        Assert.Equal(ExceptionVector.UD, r.Vector);
        Assert.Equal(0x1015UL, g.S.Rip);
        Assert.True(g.Machine.Core.DeliverException(ExceptionVector.UD, false, 0));
        Assert.Equal(Handler, g.S.Rip);
        Assert.Equal(0UL, g.Flags & RflagsBits.IF); // interrupt gate
        r = g.Machine.Run();
        Assert.Equal(FlatStopReason.Halt, r.Reason);
        Assert.Equal(0x77UL, g.Reg(3));
        Assert.Equal(GuestRunner.StackTop, g.Reg(4));
        Assert.Equal(RflagsBits.IF | RflagsBits.CF, g.Flags & (RflagsBits.IF | RflagsBits.CF));
        Assert.Equal((ushort)0x08, g.S.Cs.Selector);
    }

    [Fact]
    public void Empty_idt_escalates_to_a_triple_fault()
    {
        using var g = new GuestRunner(32);
        Put(g, 0x2010, 0);
        var r = g.Run(a => { a.lidt(__[0x2010]); a.ud2(); });
        Assert.Equal(ExceptionVector.UD, r.Vector);
        Assert.False(g.Machine.Core.DeliverException(ExceptionVector.UD, false, 0));
    }

    [Fact]
    public void Far_call_and_far_ret_with_imm16_in_protected_mode()
    {
        using var g = new GuestRunner(32);
        WriteGdt(g);
        g.S.GdtrBase = Gdt;
        g.S.GdtrLimit = 0x27;
        // Far pointer at 0x2100: offset Handler, selector 0x08. The callee returns with retf 4 (one dword argument).
        Put(g, 0x2100, Handler | (0x08UL << 32));
        new byte[] { 0xB8, 0x55, 0, 0, 0, 0xCA, 0x04, 0x00 }.CopyTo(g.Machine.Memory.Slice((int)Handler)); // mov eax, 0x55; retf 4
        var r = g.Run(a => { a.push(0x1234); a.db(0xFF, 0x1D, 0x00, 0x21, 0x00, 0x00); /* call far [0x2100] */ a.mov(ebx, 1); });
        Assert.Equal(FlatStopReason.Halt, r.Reason);
        Assert.Equal(0x55UL, g.Reg(0));
        Assert.Equal(1UL, g.Reg(3));
        Assert.Equal(GuestRunner.StackTop, g.Reg(4));
        Assert.Equal((ushort)0x08, g.S.Cs.Selector);
    }

    [Fact]
    public void Far_jmp_to_a_data_segment_or_a_not_present_segment_faults()
    {
        using var g = new GuestRunner(32);
        WriteGdt(g);
        g.S.GdtrBase = Gdt;
        g.S.GdtrLimit = 0x27;
        var r = g.Run(a => a.db(0xEA, 0x00, 0x10, 0x00, 0x00, 0x10, 0x00)); // ljmp 0x10:0x1000
        Assert.Equal(ExceptionVector.GP, r.Vector);
        Assert.Equal(0x10u, r.ErrorCode);
        r = g.Run(a => a.db(0xEA, 0x00, 0x10, 0x00, 0x00, 0x18, 0x00)); // ljmp 0x18:0x1000
        Assert.Equal(ExceptionVector.NP, r.Vector);
        Assert.Equal(0x18u, r.ErrorCode);
        g.Run(a => a.cpuid()); // leaves a VM-exit event behind; the next fault must not be mistaken for it
        r = g.Run(a => a.db(0xEA, 0x00, 0x10, 0x00, 0x00, 0x28, 0x00)); // ljmp 0x28:0x1000, beyond the GDT limit
        Assert.Equal(FlatStopReason.Exception, r.Reason);
        Assert.Equal(ExceptionVector.GP, r.Vector);
        Assert.Equal(0x28u, r.ErrorCode);
        r = g.Run(a => a.db(0xEA, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00)); // null selector
        Assert.Equal(ExceptionVector.GP, r.Vector);
        Assert.Equal(0u, r.ErrorCode);
        Assert.Equal(GuestRunner.CodeAddress, g.S.Rip);
    }

    [Fact]
    public void Real_mode_far_jmp_and_iret()
    {
        using var g = new GuestRunner(16);
        // iret frame: IP 0x000E, CS 0x0100 (linear 0x100E, the hlt), FLAGS with CF set.
        var r = g.Run(a =>
        {
            a.db(0xEA, 0x05, 0x00, 0x00, 0x01);   // 0x1000 jmp 0x0100:0x0005 (linear 0x1005)
            a.push(0x0003);                        // 0x1005 flags image: CF | reserved bit 1 (push imm8)
            a.push(0x0100);                        // 0x1007 CS
            a.push(0x000E);                        // 0x100A IP (push imm8)
            a.iret();                              // 0x100C
            a.nop();                               // 0x100D, then hlt at 0x100E
        });
        Assert.Equal(FlatStopReason.Halt, r.Reason);
        Assert.Equal((ushort)0x0100, g.S.Cs.Selector);
        Assert.Equal(0x1000UL, g.S.Cs.Base);
        Assert.Equal(0x0EUL, g.S.Rip);
        Assert.Equal(RflagsBits.CF, g.Flags & RflagsBits.CF);
        Assert.Equal(GuestRunner.StackTop & 0xFFFF, g.Reg(4) & 0xFFFF);
    }

    [Fact]
    public void Iretq_in_64_bit_mode_pops_ss_and_rsp()
    {
        using var g = new GuestRunner(64);
        WriteGdt(g);
        g.S.GdtrBase = Gdt;
        g.S.GdtrLimit = 0x27;
        var r = g.Run(a =>
        {
            a.mov(rax, rsp);
            a.push(0x10);          // SS
            a.push(rax);           // RSP
            a.push(0x203);         // RFLAGS (IF, CF)
            a.push(0x20);          // CS
            var back = a.CreateLabel();
            a.lea(rcx, __[back]);
            a.push(rcx);           // RIP: just after iretq
            a.iretq();
            a.Label(ref back);
            a.mov(ebx, 9);
        });
        Assert.Equal(FlatStopReason.Halt, r.Reason);
        Assert.Equal(9UL, g.Reg(3));
        Assert.Equal(GuestRunner.StackTop, g.Reg(4));
        Assert.Equal((ushort)0x20, g.S.Cs.Selector);
        Assert.Equal((ushort)0x10, g.S.Ss.Selector);
        Assert.Equal(RflagsBits.CF, g.Flags & RflagsBits.CF);
        Assert.Equal(64, g.Machine.Bitness);
    }

    [Fact]
    public void Descriptor_table_exiting_reports_exit_46_with_instruction_information()
    {
        using var g = new GuestRunner(32);
        g.Machine.Core.DescriptorTableExiting = true;
        var r = g.Run(a => a.lidt(__[esi + ebx * 4 + 0x10]));
        Assert.Equal(FlatStopReason.Exit, r.Reason);
        Assert.Equal(46u, r.ExitReason);
        Assert.Equal(0x10UL, r.Qualification);
        // scale 4 (2), address size 32 (1 << 7), operand size 32 (bit 11), DS (3), index EBX (3), base ESI (6), LIDT (3).
        uint expected = 2u | (1u << 7) | (1u << 11) | (3u << 15) | (3u << 18) | (6u << 23) | (3u << 28);
        Assert.Equal(expected, g.Machine.Core.Event.InstructionInformation);
        Assert.Equal(GuestRunner.CodeAddress, g.S.Rip);
        // Privilege faults come before the exit (SDM Vol. 3C §26.1.1).
        g.S.Cs.Selector |= 3;
        r = g.Run(a => a.sgdt(__[0x100]));
        Assert.Equal(FlatStopReason.Exit, r.Reason); // SGDT is not privileged without CR4.UMIP
        Assert.Equal((1u << 27) | (1u << 22) | (1u << 7) | (1u << 11) | (3u << 15), g.Machine.Core.Event.InstructionInformation);
        r = g.Run(a => a.lgdt(__[0x100]));
        Assert.Equal(FlatStopReason.Exception, r.Reason);
        Assert.Equal(ExceptionVector.GP, r.Vector);
    }
}
