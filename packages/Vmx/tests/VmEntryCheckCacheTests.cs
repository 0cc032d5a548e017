using VmmKit.Ept;

namespace VmmKit.Vmx.Tests;

/// <summary>
/// <see cref="VmEntryChecks"/> remembers that a VMCS's control and host-state fields passed and skips those checks until
/// one of their inputs changes: every change must still be caught, with the verdict a fresh check would give.
/// </summary>
public class VmEntryCheckCacheTests
{
    private static readonly VmEntryEnvironment Host64 = new() { HostInIa32eMode = true, PhysicalAddressWidth = 39, CurrentVmcsPointer = 0x5000 };
    private static readonly VmcsHostState HostState = new()
    {
        Cr0 = 0x8000_0031, Cr3 = 0x1000, Cr4 = 0x2020, CodeSelector = 0x08, DataSelector = 0x10, TaskSelector = 0x18,
        TrBase = 0x3000, GdtrBase = 0x2000, IdtrBase = 0x2800, Rsp = 0x9000, Rip = 0xFFFF_8000_0000_1000, Is64Bit = true,
    };

    private static (VmEntryChecks Checks, Vmcs Vmcs) PassedOnce()
    {
        var caps = CapabilityTests.Sample();
        var v = new Vmcs();
        VmcsBuilder.SetPvh32Guest(v, caps, EptPointer.Create(new MachineFrameNumber(0x100)), 0x10_0000);
        VmcsBuilder.SetHostState(v, HostState);
        var checks = new VmEntryChecks(caps);
        Assert.Equal(VmEntryCheckResult.Success, checks.Check(v, Host64));
        return (checks, v);
    }

    [Fact]
    public void A_control_field_changed_after_a_pass_is_checked_again()
    {
        var (checks, v) = PassedOnce();
        v.Write(VmcsField.PrimaryProcessorBasedVmExecutionControls, v.Read(VmcsField.PrimaryProcessorBasedVmExecutionControls)
            | (ulong)PrimaryProcessorBasedControls.UseMsrBitmaps);
        v.Write(VmcsField.MsrBitmapsAddress, 0x1234); // not page aligned
        VmEntryCheckResult r = checks.Check(v, Host64);
        Assert.Equal(VmInstructionError.VmEntryWithInvalidControlFields, r.Error);
        Assert.Equal(VmEntryCheck.MsrBitmapAddressInvalid, r.FailedCheck);
        v.Write(VmcsField.MsrBitmapsAddress, 0x2000);
        Assert.Equal(VmEntryCheckResult.Success, checks.Check(v, Host64));
    }

    [Fact]
    public void The_high_half_of_a_64_bit_control_field_counts_as_a_change()
    {
        var (checks, v) = PassedOnce();
        v.Write(VmcsField.EptPointerHigh, 1UL << 20); // bit 52 of the EPTP: beyond the 39-bit physical-address width
        Assert.Equal(VmEntryCheck.EptPointerInvalid, checks.Check(v, Host64).FailedCheck);
    }

    [Fact]
    public void A_host_state_field_changed_after_a_pass_is_checked_again()
    {
        var (checks, v) = PassedOnce();
        v.Write(VmcsField.HostCsSelector, 0);
        VmEntryCheckResult r = checks.Check(v, Host64);
        Assert.Equal(VmInstructionError.VmEntryWithInvalidHostStateFields, r.Error);
        Assert.Equal(VmEntryCheck.HostCsNull, r.FailedCheck);
    }

    [Fact]
    public void Event_injection_is_checked_on_every_entry_against_the_guest_cr0_of_that_entry()
    {
        var (checks, v) = PassedOnce();
        // #GP with an error code: consistent while the unrestricted guest is in protected mode (§27.2.1.3).
        uint gp = 13 | (uint)InterruptionType.HardwareException << 8 | InterruptionInformation.ErrorCodeValidBit | InterruptionInformation.ValidBit;
        v.Write(VmcsField.VmEntryInterruptionInformation, gp);
        Assert.Equal(VmEntryCheckResult.Success, checks.Check(v, Host64));
        // Only a guest-state field changes: real mode makes the same injection invalid.
        v.Write(VmcsField.GuestCr0, v.Read(VmcsField.GuestCr0) & ~1UL);
        VmEntryCheckResult r = checks.Check(v, Host64);
        Assert.Equal(VmEntryCheck.EventInjectionErrorCodeInconsistent, r.FailedCheck);
    }

    [Fact]
    public void Another_environment_or_another_checker_checks_everything_again()
    {
        var (checks, v) = PassedOnce();
        var host32 = Host64 with { HostInIa32eMode = false };
        Assert.Equal(VmEntryCheck.HostAddressSpaceSizeInvalid, checks.Check(v, host32).FailedCheck);
        Assert.Equal(VmEntryCheckResult.Success, checks.Check(v, Host64));
        // CapabilityTests.Sample() without any secondary control allowed (IA32_VMX_PROCBASED_CTLS2 = 0).
        var strict = new VmEntryChecks(VmxCapabilities.FromMsrs(new Dictionary<uint, ulong>
        {
            [0x480] = 0x00DA_0400_0000_0001, [0x481] = 0x0000_00FF_0000_0016, [0x482] = 0xFFF9_FFFE_0401_E172,
            [0x483] = 0x01FF_FFFF_0003_6DFF, [0x484] = 0x0003_FFFF_0000_11FF, [0x485] = 0x0000_0000_0000_01E5,
            [0x486] = 0x8000_0021, [0x487] = 0xFFFF_FFFF, [0x488] = 0x2000, [0x489] = 0x0037_67FF, [0x48B] = 0,
            [0x48C] = 0x0000_0F01_0631_4141, [0x48D] = 0x0000_00FF_0000_0016, [0x48E] = 0xFFF9_FFFE_0400_6172,
            [0x48F] = 0x01FF_FFFF_0003_6DFB, [0x490] = 0x0003_FFFF_0000_11FB,
        }));
        Assert.Equal(VmEntryCheck.SecondaryControlsNotAllowed, strict.Check(v, Host64).FailedCheck);
    }

    [Fact]
    public void Writing_the_value_a_field_already_holds_keeps_the_pass_and_the_verdict()
    {
        var (checks, v) = PassedOnce();
        v.Write(VmcsField.VmEntryControls, v.Read(VmcsField.VmEntryControls));
        Assert.Equal(VmEntryCheckResult.Success, checks.Check(v, Host64));
        v.Clear();
        Assert.False(checks.Check(v, Host64).Succeeded);
    }
}
