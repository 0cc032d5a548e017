using System.Runtime.CompilerServices;

namespace VmmKit.Vmx.Tests;

public class VmcsGuestHelperTests
{
    private static Vmcs Guest(ulong cr0, ulong rflags, bool ia32e, uint cs)
    {
        var v = new Vmcs();
        v.Write(VmcsField.GuestCr0, cr0);
        v.Write(VmcsField.GuestRflags, rflags);
        v.VmEntryControls = ia32e ? VmEntryControls.Ia32eModeGuest : 0;
        v.Write(VmcsField.GuestCsAccessRights, cs);
        return v;
    }

    [Theory]
    [InlineData(0x10ul, 0x2ul, false, 0x9Bu, GuestExecutionMode.Real)]
    [InlineData(0x11ul, 0x20002ul, false, 0xC09Bu, GuestExecutionMode.Virtual8086)]
    [InlineData(0x11ul, 0x2ul, false, 0x9Bu, GuestExecutionMode.Protected16)]
    [InlineData(0x11ul, 0x2ul, false, 0xC09Bu, GuestExecutionMode.Protected32)]
    [InlineData(0x80000011ul, 0x2ul, true, 0xA09Bu, GuestExecutionMode.Long64)]
    [InlineData(0x80000011ul, 0x2ul, true, 0xC09Bu, GuestExecutionMode.Protected32)]   // compatibility mode
    [InlineData(0x80000011ul, 0x2ul, false, 0xA09Bu, GuestExecutionMode.Protected16)]  // CS.L without IA-32e mode
    public void Guest_mode_follows_cr0_rflags_ia32e_and_cs(ulong cr0, ulong rflags, bool ia32e, uint cs, GuestExecutionMode expected) =>
        Assert.Equal(expected, Guest(cr0, rflags, ia32e, cs).GuestMode);

    [Fact]
    public void Mode_numbers_are_xens_hvm_guest_x86_mode()
    {
        Assert.Equal([0, 1, 2, 4, 8], Enum.GetValues<GuestExecutionMode>().Select(m => (int)m));
    }

    [Theory]
    [InlineData(0xC093u, 0)]
    [InlineData(0xC0F3u, 3)]
    [InlineData(0xC0B3u, 1)]
    public void Cpl_is_ss_dpl(uint ss, int cpl)
    {
        var v = new Vmcs();
        v.Write(VmcsField.GuestSsAccessRights, ss);
        Assert.Equal(cpl, v.GuestCpl);
    }

    [Fact]
    public void Hardware_exception_with_error_code_fills_the_entry_fields()
    {
        var v = new Vmcs();
        v.Write(VmcsField.VmEntryInstructionLength, 7);
        v.InjectHardwareException(14, 0x6);
        Assert.Equal(0x80000B0Eu, (uint)v.Read(VmcsField.VmEntryInterruptionInformation));
        Assert.Equal(6ul, v.Read(VmcsField.VmEntryExceptionErrorCode));
        Assert.Equal(0ul, v.Read(VmcsField.VmEntryInstructionLength));
        v.InjectGeneralProtection();
        Assert.Equal(0x80000B0Du, (uint)v.Read(VmcsField.VmEntryInterruptionInformation));
        v.InjectInvalidOpcode();
        Assert.Equal(0x80000306u, (uint)v.Read(VmcsField.VmEntryInterruptionInformation));
    }

    [Fact]
    public void Software_interrupt_carries_the_instruction_length_and_external_and_nmi_do_not()
    {
        var v = new Vmcs();
        v.InjectSoftwareInterrupt(0x80, 2);
        Assert.Equal(0x80000480u, (uint)v.Read(VmcsField.VmEntryInterruptionInformation));
        Assert.Equal(2ul, v.Read(VmcsField.VmEntryInstructionLength));
        v.InjectExternalInterrupt(0x30);
        Assert.Equal(0x80000030u, (uint)v.Read(VmcsField.VmEntryInterruptionInformation));
        Assert.Equal(0ul, v.Read(VmcsField.VmEntryInstructionLength));
        v.InjectNmi();
        Assert.Equal(0x80000202u, (uint)v.Read(VmcsField.VmEntryInterruptionInformation));
        v.InjectEvent(InterruptionType.SoftwareException, 3, null, 1);
        Assert.Equal((0x80000603u, 1ul), ((uint)v.Read(VmcsField.VmEntryInterruptionInformation), v.Read(VmcsField.VmEntryInstructionLength)));
    }

    [Fact]
    public void Interrupt_window_rules()
    {
        var v = new Vmcs();
        v.Write(VmcsField.GuestRflags, 0x2);
        Assert.False(v.CanInjectExternalInterrupt);                     // IF = 0
        v.Write(VmcsField.GuestRflags, 0x202);
        Assert.True(v.CanInjectExternalInterrupt);
        v.Write(VmcsField.GuestInterruptibilityState, 1);                // blocking by STI
        Assert.False(v.CanInjectExternalInterrupt);
        Assert.False(v.CanInjectNmi);
        v.Write(VmcsField.GuestInterruptibilityState, 8);                // blocking by NMI
        Assert.True(v.CanInjectExternalInterrupt);
        Assert.False(v.CanInjectNmi);
        v.Write(VmcsField.GuestInterruptibilityState, 0);
        v.InjectHardwareException(0);
        Assert.False(v.CanInjectExternalInterrupt);                      // one event per entry
        Assert.False(v.CanInjectNmi);
    }

    [Fact]
    public void Error_code_vectors_are_table_6_1s()
    {
        var withCode = Enumerable.Range(0, 32).Where(v => Vmcs.ExceptionHasErrorCode((byte)v));
        Assert.Equal([8, 10, 11, 12, 13, 14, 17, 21], withCode);
    }

    // The layout VmmKit.Hypercall's HypercallRegisters.View relies on (its remarks): x86 encoding order without RSP.
    [Fact]
    public void Guest_registers_are_fifteen_qwords_in_x86_encoding_order_without_rsp()
    {
        var r = default(GuestRegisters);
        long Off(ref ulong field) => Unsafe.ByteOffset(ref Unsafe.As<GuestRegisters, ulong>(ref r), ref field);
        Assert.Equal([0L, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112],
            [Off(ref r.Rax), Off(ref r.Rcx), Off(ref r.Rdx), Off(ref r.Rbx), Off(ref r.Rbp), Off(ref r.Rsi), Off(ref r.Rdi),
             Off(ref r.R8), Off(ref r.R9), Off(ref r.R10), Off(ref r.R11), Off(ref r.R12), Off(ref r.R13), Off(ref r.R14), Off(ref r.R15)]);
        Assert.Equal(120, Unsafe.SizeOf<GuestRegisters>());
    }
}
