using Iced.Intel;
using VmmKit.Vmx;
using VmmKit.Vmx.Emulator.Engine;
using VmmKit.Vmx.Emulator.Testing;
using static Iced.Intel.AssemblerRegisters;
using static VmmKit.Vmx.Emulator.Tests.SystemLevel.ControlRegisterTests;

namespace VmmKit.Vmx.Emulator.Tests.SystemLevel;

/// <summary>
/// LAR, LSL, VERR, VERW (SDM Vol. 2A LAR/LSL, Vol. 2C VERR/VERW), LDT selectors in segment loads (Vol. 3A §3.5.1) and the
/// accessed bit a load writes back (§3.4.5.1).
/// </summary>
public unsafe class SegmentQueryTests
{
    private const ulong Gdt = 0x5000, Ldt = 0x6000;

    // GDT: 0x08 code32, 0x10 data, 0x18 DPL-3 data (base 0x1000, limit 0xFFF, not accessed), 0x20 execute-only code,
    // 0x28 conforming readable code DPL 3, 0x30 busy 32-bit TSS, 0x38 32-bit call gate, 0x40 16-bit available TSS,
    // 0x48 LDT at 0x6000 with one descriptor (limit 7).
    private static FlatTestMachine Machine(int bitness, Action<Assembler> code)
    {
        var m = new FlatTestMachine(1 << 20, bitness);
        Assemble(bitness, code).CopyTo(m.Memory.Slice(0x1000));
        m.State.Rip = 0x1000;
        ulong[] gdt =
        [
            0, 0x00CF_9B00_0000_FFFF, 0x00CF_9300_0000_FFFF, 0x0040_F200_1000_0FFF, 0x00CF_9900_0000_FFFF,
            0x00CF_FF00_0000_FFFF, 0x0000_8B00_0000_0067, 0x0000_8C00_0008_0000, 0x0000_8100_0000_002B, 0x0000_8200_6000_0007,
        ];
        for (int k = 0; k < gdt.Length; k++)
            BitConverter.GetBytes(gdt[k]).CopyTo(m.Memory.Slice((int)Gdt + 8 * k));
        BitConverter.GetBytes(0x00CF_9300_0000_FFFFUL).CopyTo(m.Memory.Slice((int)Ldt));
        m.State.GdtrBase = Gdt;
        m.State.GdtrLimit = (uint)(8 * gdt.Length - 1);
        return m;
    }

    /// <summary>LAR ebx, selector; setz cl; LSL edx, selector; setz ch.</summary>
    private static void Query(Assembler a, int selector)
    {
        a.mov(eax, selector);
        a.mov(ebx, 0xDEAD); a.mov(edx, 0xDEAD);
        a.lar(ebx, eax); a.setz(cl);
        a.lsl(edx, eax); a.setz(ch);
        a.hlt();
    }

    [Theory]
    [InlineData(0x10, true, 0xC09300u, true, 0xFFFF_FFFFu)]      // data: AR masked by 00F0FF00H, G scales the limit
    [InlineData(0x1B, true, 0x40F200u, true, 0xFFFu)]            // DPL-3 data with RPL 3, byte granular
    [InlineData(0x20, true, 0xC09900u, true, 0xFFFF_FFFFu)]      // execute-only code is still visible to LAR/LSL
    [InlineData(0x2B, true, 0xC0FF00u, true, 0xFFFF_FFFFu)]      // conforming code: no privilege check
    [InlineData(0x30, true, 0x8B00u, true, 0x67u)]               // busy 32-bit TSS
    [InlineData(0x38, true, 0x8C00u, false, 0xDEADu)]            // call gate: LAR only
    [InlineData(0x13, false, 0xDEADu, false, 0xDEADu)]           // RPL 3 > DPL 0
    [InlineData(0x00, false, 0xDEADu, false, 0xDEADu)]           // null
    [InlineData(0x1230, false, 0xDEADu, false, 0xDEADu)]         // past the GDT limit
    [InlineData(0x04, false, 0xDEADu, false, 0xDEADu)]           // LDT selector with no LDT loaded
    public void Lar_and_lsl_report_access_rights_and_limits_or_clear_zf(int selector, bool larZf, uint ar, bool lslZf, uint limit)
    {
        using var m = Machine(32, a => Query(a, selector));
        Assert.Equal(FlatStopReason.Halt, m.Run().Reason);
        Assert.Equal(larZf ? 1UL : 0UL, m.State.Gpr[1] & 0xFF);
        Assert.Equal(ar, (uint)m.State.Gpr[3]);
        Assert.Equal(lslZf ? 1UL : 0UL, (m.State.Gpr[1] >> 8) & 0xFF);
        Assert.Equal(limit, (uint)m.State.Gpr[2]);
    }

    [Fact]
    public void In_ia32e_mode_only_ldt_64_bit_tss_and_call_gate_descriptors_are_valid()
    {
        using var m = Machine(64, a => Query(a, 0x40)); // a 16-bit TSS
        Assert.Equal(FlatStopReason.Halt, m.Run().Reason);
        Assert.Equal(0UL, m.State.Gpr[1] & 0xFFFF);
        using var m2 = Machine(64, a => Query(a, 0x48)); // the LDT descriptor
        Assert.Equal(FlatStopReason.Halt, m2.Run().Reason);
        Assert.Equal(0x0101UL, m2.State.Gpr[1] & 0xFFFF);
        Assert.Equal(7UL, m2.State.Gpr[2]);
    }

    [Theory]
    [InlineData(0x10, true, true)]     // writable data
    [InlineData(0x08, true, false)]    // readable code: VERR only
    [InlineData(0x20, false, false)]   // execute-only code
    [InlineData(0x2B, true, false)]    // conforming readable code
    [InlineData(0x1B, true, true)]     // DPL-3 data
    [InlineData(0x13, false, false)]   // RPL 3 on DPL 0
    [InlineData(0x30, false, false)]   // system descriptor
    [InlineData(0x00, false, false)]   // null
    public void Verr_and_verw_test_readability_and_writability(int selector, bool readable, bool writable)
    {
        using var m = Machine(32, a =>
        {
            a.mov(eax, selector);
            a.verr(ax); a.setz(cl);
            a.verw(ax); a.setz(ch);
            a.hlt();
        });
        Assert.Equal(FlatStopReason.Halt, m.Run().Reason);
        Assert.Equal(readable ? 1UL : 0UL, m.State.Gpr[1] & 0xFF);
        Assert.Equal(writable ? 1UL : 0UL, (m.State.Gpr[1] >> 8) & 0xFF);
    }

    [Fact]
    public void Lar_in_real_mode_is_ud()
    {
        using var m = Machine(16, a => { a.lar(bx, ax); a.hlt(); });
        Assert.Equal(ExceptionVector.UD, m.Run().Vector);
    }

    [Fact]
    public void Ldt_selectors_load_through_the_ldtr_and_past_its_limit_are_gp()
    {
        using var m = Machine(32, a =>
        {
            a.mov(eax, 0x48); a.lldt(ax);
            a.mov(eax, 0x04); a.mov(fs, ax);       // LDT index 0
            a.lar(ebx, eax); a.setz(cl);
            a.mov(eax, 0x0C); a.mov(gs, ax);       // LDT index 1: past the limit (7)
            a.hlt();
        });
        var r = m.Run();
        Assert.Equal(ExceptionVector.GP, r.Vector);
        Assert.Equal(0x0Cu, r.ErrorCode);
        Assert.Equal((ushort)0x04, m.State.Fs.Selector);
        Assert.Equal(1UL, m.State.Gpr[1] & 0xFF);
        Assert.Equal(0xC09300UL, m.State.Gpr[3]);
        Assert.Equal(0x93, m.Memory[(int)Ldt + 5]); // already accessed
    }

    [Fact]
    public void A_segment_load_sets_the_accessed_bit_in_the_descriptor()
    {
        using var m = Machine(32, a => { a.mov(eax, 0x18); a.mov(ds, ax); a.hlt(); });
        Assert.Equal(0xF2, m.Memory[(int)Gdt + 0x18 + 5]);
        Assert.Equal(FlatStopReason.Halt, m.Run().Reason);
        Assert.Equal(0xF3, m.Memory[(int)Gdt + 0x18 + 5]);
        Assert.Equal(0x1000UL, m.State.Ds.Base);
    }
}
