using VmmKit.Vmx;
using static Iced.Intel.AssemblerRegisters;
using static VmmKit.Vmx.Emulator.Tests.SystemLevel.InterruptTests;

namespace VmmKit.Vmx.Emulator.Tests.SystemLevel;

/// <summary>
/// Error codes that name an IDT gate (SDM Vol. 3A §6.13): index = vector in bits 15:3 in every mode (16-byte gates
/// included), IDT = 1, EXT = 1 when the delivery was of an event external to the program (a hardware exception).
/// QEMU 7.2 TCG gets both wrong (vector * 16 + 2 in IA-32e mode, EXT never set), so the systest kernels cannot judge
/// them and these tests do.
/// </summary>
public class ExceptionErrorCodeTests
{
    [Fact]
    public void Ud_through_a_not_present_gate_is_np_with_ext_set()
    {
        using var g = new VmcsGuest(64, a =>
        {
            a.lgdt(__[0x6000]);
            a.lidt(__[0x6100]);
            a.ud2();
        }, entry: 0x3000);
        WriteIdtAndTss(g);
        g.Write64(0x7000 + 6 * 16, Gate64(0x4000, 0, 0xE, 0) & ~(1UL << 47)); // #UD: not present
        g.Write64(0x7000 + 11 * 16, Gate64(0x4300, 0, 0xE, 0));               // #NP
        g.Assemble(64, 0x4300, a => { a.mov(r11, __qword_ptr[rsp]); a.hlt(); });
        VmExit e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.Hlt, e.Reason);
        Assert.Equal(6UL * 8 + 2 + 1, g.Cpu.Registers.R11);
    }

    [Fact]
    public void A_gate_past_the_idt_limit_in_ia32e_mode_names_the_vector_not_its_offset()
    {
        using var g = new VmcsGuest(64, a =>
        {
            a.lgdt(__[0x6000]);
            a.lidt(__[0x6100]);
            a.mov(eax, 0x40);
            a.ltr(ax);                                                        // #GP runs on IST1
            a.@int(0x90);
        }, entry: 0x3000);
        WriteIdtAndTss(g);
        g.Write(0x6100, BitConverter.GetBytes((ushort)(0x90 * 16 - 1)));    // the IDT ends before gate 0x90
        g.Assemble(64, 0x4100, a => { a.mov(r11, __qword_ptr[rsp]); a.hlt(); });
        VmExit e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.Hlt, e.Reason);
        Assert.Equal(0x90UL * 8 + 2, g.Cpu.Registers.R11);                   // INT n: EXT = 0
    }
}
