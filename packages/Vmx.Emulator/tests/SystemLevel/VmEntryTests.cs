using VmmKit.Vmx;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.Vmx.Emulator.Tests.SystemLevel;

/// <summary>
/// IVirtualProcessor's contract: <see cref="EmulatedProcessor.Run"/> is VMLAUNCH on a clear VMCS and VMRESUME on a
/// launched one, runs the VM-entry checks of SDM Vol. 3C chapter 27 first and keeps the launch state (§25.1).
/// </summary>
public class VmEntryTests
{
    private static VmcsGuest HltGuest() => new(32, a =>
    {
        a.mov(eax, 7);
        a.hlt();
        a.inc(eax);
        a.hlt();
    });

    [Fact]
    public void Run_launches_a_clear_vmcs_then_resumes_it()
    {
        using var g = HltGuest();
        Assert.Equal(VmcsLaunchState.Clear, g.Vmcs.LaunchState);
        VmExit exit = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.Hlt, exit.Reason);
        Assert.Equal(VmcsLaunchState.Launched, g.Vmcs.LaunchState);
        g.Advance(exit);
        exit = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmxExitReason.Hlt, exit.Reason);
        Assert.Equal(8UL, g.Cpu.Registers.Rax);
    }

    [Fact]
    public void Vmlaunch_of_a_launched_vmcs_and_vmresume_of_a_clear_one_fail_valid()
    {
        using var g = HltGuest();
        VmExit exit = g.Cpu.Resume(g.Vmcs);
        Assert.Equal(VmExitOutcome.VmFailValid, exit.Outcome);
        Assert.Equal(VmInstructionError.VmresumeWithNonLaunchedVmcs, exit.Error);
        Assert.Equal((ulong)VmInstructionError.VmresumeWithNonLaunchedVmcs, g.Vmcs.Read(VmcsField.VmInstructionError));
        Assert.Equal(0UL, g.Cpu.InstructionsRetired);

        Assert.Equal(VmxExitReason.Hlt, g.Cpu.Launch(g.Vmcs).Reason);
        exit = g.Cpu.Launch(g.Vmcs);
        Assert.Equal(VmExitOutcome.VmFailValid, exit.Outcome);
        Assert.Equal(VmInstructionError.VmlaunchWithNonClearVmcs, exit.Error);
        Assert.Equal(VmcsLaunchState.Launched, g.Vmcs.LaunchState);
    }

    [Fact]
    public void An_invalid_host_state_is_vmfail_valid_8_and_the_guest_does_not_run()
    {
        using var g = HltGuest();
        g.Vmcs.Write(VmcsField.HostCr4, 0); // CR4.VMXE is fixed to 1 (SDM Vol. 3C §27.2.2)
        VmExit exit = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmExitOutcome.VmFailValid, exit.Outcome);
        Assert.Equal(VmInstructionError.VmEntryWithInvalidHostStateFields, exit.Error);
        Assert.Equal(VmcsLaunchState.Clear, g.Vmcs.LaunchState);
        Assert.Equal(0UL, g.Cpu.InstructionsRetired);
    }

    [Fact]
    public void An_unsupported_control_is_vmfail_valid_7()
    {
        using var g = HltGuest();
        g.SetControl(VmcsField.PinBasedVmExecutionControls, (ulong)PinBasedControls.ProcessPostedInterrupts);
        VmExit exit = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmExitOutcome.VmFailValid, exit.Outcome);
        Assert.Equal(VmInstructionError.VmEntryWithInvalidControlFields, exit.Error);
    }

    [Fact]
    public void An_invalid_guest_state_is_an_entry_failure_with_bit_31_and_the_launch_state_stays_clear()
    {
        using var g = HltGuest();
        g.Vmcs.Write(VmcsField.GuestRflags, 0); // RFLAGS bit 1 must be 1 (SDM Vol. 3C §27.3.1.4)
        VmExit exit = g.Cpu.Run(g.Vmcs);
        Assert.Equal(VmExitOutcome.EntryFailure, exit.Outcome);
        Assert.True(exit.IsEntryFailure);
        Assert.Equal(VmxExitReason.EntryFailureInvalidGuestState, exit.Reason);
        Assert.Equal((ulong)VmxExitReason.EntryFailureInvalidGuestState | VmExit.EntryFailureBit, g.Vmcs.Read(VmcsField.ExitReason));
        Assert.Equal(VmcsLaunchState.Clear, g.Vmcs.LaunchState);
        Assert.Equal(0UL, g.Cpu.InstructionsRetired);
    }

    [Fact]
    public void The_emulated_host_state_passes_the_checks_with_both_builders()
    {
        var checks = new VmEntryChecks(EmulatedCapabilities.Create());
        var env = new VmEntryEnvironment { HostInIa32eMode = true, PhysicalAddressWidth = 52 };
        using var pvh = new VmcsGuest(32);
        using var longMode = new VmcsGuest(64);
        Assert.True(checks.Check(pvh.Vmcs, env).Succeeded, checks.Check(pvh.Vmcs, env).ToString());
        Assert.True(checks.Check(longMode.Vmcs, env).Succeeded, checks.Check(longMode.Vmcs, env).ToString());
    }
}
