using VmmKit.Ept;

namespace VmmKit.Vmx.Tests;

public class VmEntryCheckUnitTests
{
    private static readonly VmEntryEnvironment Host64 = new() { HostInIa32eMode = true, PhysicalAddressWidth = 39, CurrentVmcsPointer = 0x5000 };
    private static readonly VmcsHostState HostState = new()
    {
        Cr0 = 0x8000_0031, Cr3 = 0x1000, Cr4 = 0x2020, CodeSelector = 0x08, DataSelector = 0x10, TaskSelector = 0x18,
        TrBase = 0x3000, GdtrBase = 0x2000, IdtrBase = 0x2800, Rsp = 0x9000, Rip = 0xFFFF_8000_0000_1000, Is64Bit = true,
    };

    private static Vmcs Pvh(VmxCapabilities caps)
    {
        var v = new Vmcs();
        VmcsBuilder.SetPvh32Guest(v, caps, EptPointer.Create(new MachineFrameNumber(0x100)), 0x10_0000);
        VmcsBuilder.SetHostState(v, HostState);
        return v;
    }

    [Fact]
    public void Pvh_and_long_mode_builders_pass_every_check()
    {
        var caps = CapabilityTests.Sample();
        var checks = new VmEntryChecks(caps);
        Assert.Equal(VmEntryCheckResult.Success, checks.Check(Pvh(caps), Host64));

        var lm = new Vmcs();
        VmcsBuilder.SetLongModeGuest(lm, caps, EptPointer.Create(new MachineFrameNumber(0x100)), cr3: 0x4000, entryPoint: 0xFFFF_FFFF_8000_0000, stackPointer: 0x8000);
        VmcsBuilder.SetHostState(lm, HostState);
        var r = checks.Check(lm, Host64);
        Assert.True(r.Succeeded, r.ToString());
    }

    [Fact]
    public void Host_state_and_guest_setup_compose_in_either_order()
    {
        var caps = CapabilityTests.Sample();
        var v = new Vmcs();
        VmcsBuilder.SetHostState(v, HostState);
        VmcsBuilder.SetPvh32Guest(v, caps, EptPointer.Create(new MachineFrameNumber(0x100)), 0x10_0000);
        Assert.True(v.VmExitControls.HasFlag(VmExitControls.HostAddressSpaceSize));
        Assert.True(new VmEntryChecks(caps).Check(v, Host64).Succeeded);
    }

    [Fact]
    public void Pvh_guest_state_follows_the_pvh_abi()
    {
        var caps = CapabilityTests.Sample();
        var v = Pvh(caps);
        Assert.Equal(0x10_0000ul, v.Read(VmcsField.GuestRip));
        Assert.Equal(VmcsBuilder.Cr0Pe | VmcsBuilder.Cr0Et, v.Read(VmcsField.Cr0ReadShadow));
        Assert.Equal(0ul, v.Read(VmcsField.GuestCr0) & VmcsBuilder.Cr0Pg);
        Assert.Equal(0xFFFF_FFFFul, v.Read(VmcsField.GuestCsLimit));
        Assert.Equal(0xC09Bul, v.Read(VmcsField.GuestCsAccessRights));
        Assert.Equal(0x2ul, v.Read(VmcsField.GuestRflags));
        var secondary = (SecondaryProcessorBasedControls)v.Read(VmcsField.SecondaryProcessorBasedVmExecutionControls);
        Assert.True(secondary.HasFlag(SecondaryProcessorBasedControls.UnrestrictedGuest | SecondaryProcessorBasedControls.EnableEpt));
    }

    [Theory]
    [InlineData("launch", VmInstructionError.VmlaunchWithNonClearVmcs)]
    [InlineData("vpid", VmInstructionError.VmEntryWithInvalidControlFields)]
    [InlineData("hostrip", VmInstructionError.VmEntryWithInvalidHostStateFields)]
    [InlineData("hostcr3", VmInstructionError.VmEntryWithInvalidHostStateFields)]
    [InlineData("hostsysenter", VmInstructionError.VmEntryWithInvalidHostStateFields)]
    public void VmFail_verdicts(string what, VmInstructionError expected)
    {
        var caps = CapabilityTests.Sample();
        var v = Pvh(caps);
        switch (what)
        {
            case "launch": v.LaunchState = VmcsLaunchState.Launched; break;
            case "vpid": v.Write(VmcsField.SecondaryProcessorBasedVmExecutionControls, v.Read(VmcsField.SecondaryProcessorBasedVmExecutionControls) | (uint)SecondaryProcessorBasedControls.EnableVpid); break;
            case "hostrip": v.Write(VmcsField.HostRip, 0x0000_8000_0000_0000); break;
            case "hostcr3": v.Write(VmcsField.HostCr3, 1ul << 45); break;
            case "hostsysenter": v.Write(VmcsField.HostIa32SysenterEip, 0x0001_0000_0000_0000); break;
        }
        var r = new VmEntryChecks(caps).Check(v, Host64);
        Assert.Equal(VmExitOutcome.VmFailValid, r.Outcome);
        Assert.Equal(expected, r.Error);
        Assert.Equal(VmExitOutcome.VmFailValid, r.ToVmExit().Outcome);
    }

    [Fact]
    public void Resume_needs_a_launched_vmcs()
    {
        var caps = CapabilityTests.Sample();
        var v = Pvh(caps);
        var r = new VmEntryChecks(caps).Check(v, Host64, resume: true);
        Assert.Equal(VmInstructionError.VmresumeWithNonLaunchedVmcs, r.Error);
        v.LaunchState = VmcsLaunchState.Launched;
        Assert.True(new VmEntryChecks(caps).Check(v, Host64, resume: true).Succeeded);
    }

    [Fact]
    public void Guest_rip_and_link_pointer_entry_failures()
    {
        var caps = CapabilityTests.Sample();
        var checks = new VmEntryChecks(caps);
        var v = Pvh(caps);
        v.Write(VmcsField.GuestRip, 0x1_0000_0000);
        var r = checks.Check(v, Host64);
        Assert.Equal(VmEntryCheck.GuestRipInvalid, r.FailedCheck);
        Assert.Equal(VmxExitReason.EntryFailureInvalidGuestState, r.ExitReason);

        v = Pvh(caps);
        v.Write(VmcsField.VmcsLinkPointer, 0x5000);
        r = checks.Check(v, Host64);
        Assert.Equal(VmEntryCheck.GuestVmcsLinkPointerInvalid, r.FailedCheck);
        Assert.Equal(EntryFailureQualification.InvalidVmcsLinkPointer, r.Qualification);
        Assert.Equal(0x8000_0021u, r.ToVmExit().RawExitReason);
        Assert.Equal(4ul, r.ToVmExit().Qualification);
    }

    [Fact]
    public void Pae_guest_with_bad_pdpte_fails_with_qualification_2()
    {
        var caps = CapabilityTests.Sample();
        var v = Pvh(caps);
        v.Write(VmcsField.GuestCr0, v.Read(VmcsField.GuestCr0) | VmcsBuilder.Cr0Pg);
        v.Write(VmcsField.GuestCr4, v.Read(VmcsField.GuestCr4) | VmcsBuilder.Cr4Pae);
        v.Write(VmcsField.GuestPdpte1, 0x1000 | 1 | (1 << 5));
        var r = new VmEntryChecks(caps).Check(v, Host64);
        Assert.Equal(VmEntryCheck.GuestPdpteInvalid, r.FailedCheck);
        Assert.Equal(EntryFailureQualification.PdpteLoading, r.Qualification);
    }

    [Fact]
    public void Canonical_and_pat_helpers()
    {
        Assert.True(VmEntryChecks.IsCanonical(0xFFFF_8000_0000_0000));
        Assert.True(VmEntryChecks.IsCanonical(0x0000_7FFF_FFFF_FFFF));
        Assert.False(VmEntryChecks.IsCanonical(0x0000_8000_0000_0000));
        Assert.True(VmEntryChecks.IsValidPat(VmcsBuilder.DefaultPat));
        Assert.False(VmEntryChecks.IsValidPat(0x02));
    }
}
