using VmmKit.Vmx;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.Vmx.Emulator.Tests.SystemLevel;

/// <summary>Events from the host: interrupt window and the STI shadow, HLT activity state woken by injection, RequestExit (SDM Vol. 3C §26.7.5, §28.6, §28.7).</summary>
public class EventTests
{
    [Fact]
    public void Interrupt_window_opens_after_the_instruction_following_sti()
    {
        using var g = new VmcsGuest(32, a => { a.sti(); a.mov(eax, 1); a.mov(ebx, 2); a.hlt(); });
        g.SetControl(VmcsField.PrimaryProcessorBasedVmExecutionControls, (ulong)PrimaryProcessorBasedControls.InterruptWindowExiting);
        VmExit e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.InterruptWindow, e.Reason);
        Assert.Equal(0x1006UL, g.Vmcs.Read(VmcsField.GuestRip));
        Assert.Equal(1UL, g.Cpu.Registers.Rax);
        Assert.Equal(0UL, g.Cpu.Registers.Rbx);
        Assert.Equal(0UL, g.Vmcs.Read(VmcsField.GuestInterruptibilityState));
    }

    [Fact]
    public void Sti_shadow_is_stored_in_the_interruptibility_state()
    {
        using var g = new VmcsGuest(32, a => { a.sti(); a.hlt(); });
        VmExit e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.Hlt, e.Reason);
        Assert.Equal(1UL, g.Vmcs.Read(VmcsField.GuestInterruptibilityState)); // blocking by STI
    }

    [Fact]
    public void Hlt_without_hlt_exiting_waits_in_the_activity_state_and_an_injected_interrupt_wakes_it()
    {
        using var g = new VmcsGuest(64, a =>
        {
            a.lgdt(__[0x6000]);
            a.lidt(__[0x6100]);
            a.mov(eax, 0x18);
            a.mov(ss, ax);           // the data segment of this GDT (IRETQ reloads SS)
            a.sti();
            a.hlt();
            a.mov(ebx, 7);
            a.hlt();
        }, entry: 0x3000);
        InterruptTests.WriteIdtAndTss(g);
        g.Write64(0x7000 + 0x20 * 16, InterruptTests.Gate64(0x4000, 0, 0xE, 0));
        g.Assemble(64, 0x4000, a => { a.mov(r15, 0x99); a.iretq(); });
        ulong primary = g.Vmcs.Read(VmcsField.PrimaryProcessorBasedVmExecutionControls) & ~(ulong)PrimaryProcessorBasedControls.HltExiting;
        g.Vmcs.Write(VmcsField.PrimaryProcessorBasedVmExecutionControls, primary);
        g.SetControl(VmcsField.PinBasedVmExecutionControls, (ulong)PinBasedControls.ActivateVmxPreemptionTimer);
        g.Vmcs.Write(VmcsField.VmxPreemptionTimerValue, 100_000);
        VmExit e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.VmxPreemptionTimerExpired, e.Reason);
        Assert.Equal(1UL, g.Vmcs.Read(VmcsField.GuestActivityState));
        ulong afterHlt = g.Vmcs.Read(VmcsField.GuestRip);
        // The hypervisor injects external interrupt 0x20.
        g.Vmcs.Write(VmcsField.VmEntryInterruptionInformation, 0x20 | InterruptionInformation.ValidBit);
        g.Vmcs.Write(VmcsField.VmxPreemptionTimerValue, 100_000);
        e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.VmxPreemptionTimerExpired, e.Reason);
        Assert.Equal(0x99UL, g.Cpu.Registers.R15);
        Assert.Equal(7UL, g.Cpu.Registers.Rbx);
        Assert.Equal(1UL, g.Vmcs.Read(VmcsField.GuestActivityState));
        Assert.True(g.Vmcs.Read(VmcsField.GuestRip) > afterHlt);
    }

    [Fact]
    public void Request_exit_from_another_thread_ends_a_busy_guest_with_an_external_interrupt_exit()
    {
        using var g = new VmcsGuest(32, a =>
        {
            var top = a.CreateLabel();
            a.Label(ref top);
            a.inc(eax);
            a.jmp(top);
        });
        g.SetControl(VmcsField.PinBasedVmExecutionControls, (ulong)PinBasedControls.ExternalInterruptExiting);
        using var kicker = new Timer(_ => g.Cpu.RequestExit(), null, 50, Timeout.Infinite);
        VmExit e = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.ExternalInterrupt, e.Reason);
        Assert.True(g.Cpu.Registers.Rax > 0);
    }
}
