using VmmKit.Ept;
using VmmKit.Vmx.Tests.Bochs;

namespace VmmKit.Vmx.Tests;

/// <summary>Runs a PVH guest under Bochs's VMX and compares every logged exit with what the package's decoders predict.</summary>
public class BochsExitTests
{
    [Theory]
    [InlineData(BochsHarness.Haswell)]
    [InlineData(BochsHarness.Skylake)]
    public void Pvh_guest_exits_match_the_decoders_field_by_field(string cpuModel)
    {
        var caps = BochsHarness.CapabilitiesOf(cpuModel);
        using var guest = new HarnessGuest();
        var vmcs = BochsHarness.ValidPvhVmcs(caps, guest);
        var image = VmxHarnessImage.Build([new HarnessCase("pvh", vmcs)], guest.Memory);
        var log = HarnessLog.Parse(BochsMachine.Run(image, cpuModel));
        Assert.Empty(log.Problems);
        var exits = log.Exits[0];

        var ins = guest.ExitingInstructions.ToDictionary(i => i.What);
        Assert.Collection(exits,
            e =>
            {
                Assert.Equal(VmExitOutcome.VmExit, e.Outcome);
                Assert.Equal(VmxExitReason.Cpuid, e.Reason);
                Assert.Equal(ins["cpuid"].Length, e.InstructionLength);
            },
            e =>
            {
                Assert.Equal(VmxExitReason.IoInstruction, e.Reason);
                Assert.Equal(IoInstructionQualification.Create(HarnessGuest.OutPort, 1, isIn: false), e.IoInstruction);
                Assert.Equal(HarnessGuest.OutPort, e.IoInstruction.Port);
                Assert.False(e.IoInstruction.IsIn);
                Assert.False(e.IoInstruction.IsImmediate);
                Assert.Equal(1, e.IoInstruction.Size);
                Assert.Equal(ins["out"].Length, e.InstructionLength);
            },
            e =>
            {
                Assert.Equal(VmxExitReason.IoInstruction, e.Reason);
                Assert.Equal(IoInstructionQualification.Create(HarnessGuest.InPort, 1, isIn: true, isImmediate: true), e.IoInstruction);
                Assert.True(e.IoInstruction.IsIn);
                Assert.True(e.IoInstruction.IsImmediate);
                Assert.Equal(ins["in"].Length, e.InstructionLength);
            },
            e =>
            {
                Assert.Equal(VmxExitReason.Vmcall, e.Reason);
                Assert.Equal(ins["vmcall"].Length, e.InstructionLength);
            },
            e =>
            {
                Assert.Equal(VmxExitReason.EptViolation, e.Reason);
                Assert.Equal(HarnessGuest.UnmappedGpa, e.GuestPhysicalAddress);
                Assert.Equal(HarnessGuest.UnmappedGpa, e.GuestLinearAddress);
                // Predicted from the package's EPT walk: a read of a not-present GPA.
                guest.Ept.Translate(new GuestPhysicalAddress(HarnessGuest.UnmappedGpa), EptAccess.Read, out _, out var predicted);
                AssertViolation(Linear(predicted), e.EptViolation);
                Assert.True(e.EptViolation.WasRead);
                Assert.Equal(EptAccess.None, e.EptViolation.Permissions);
            },
            e =>
            {
                Assert.Equal(VmxExitReason.EptViolation, e.Reason);
                Assert.Equal(HarnessGuest.ReadOnlyGpa, e.GuestPhysicalAddress);
                guest.Ept.Translate(new GuestPhysicalAddress(HarnessGuest.ReadOnlyGpa), EptAccess.Write, out _, out var predicted);
                AssertViolation(Linear(predicted), e.EptViolation);
                Assert.True(e.EptViolation.WasWrite);
                Assert.Equal(EptAccess.Read, e.EptViolation.Permissions);
            },
            e =>
            {
                Assert.Equal(VmxExitReason.ControlRegisterAccess, e.Reason);
                Assert.Equal(ControlRegisterAccessQualification.MovCr(3, toCr: true, generalPurposeRegister: 0), e.ControlRegisterAccess);
                Assert.Equal(ins["mov cr3"].Length, e.InstructionLength);
            },
            e =>
            {
                Assert.Equal(VmxExitReason.ControlRegisterAccess, e.Reason);
                Assert.Equal(ControlRegisterAccessType.MovFromCr, e.ControlRegisterAccess.AccessType);
                Assert.Equal(3, e.ControlRegisterAccess.ControlRegister);
                Assert.Equal(6, e.ControlRegisterAccess.GeneralPurposeRegister); // ESI
                Assert.Equal(ins["mov from cr3"].Length, e.InstructionLength);
            },
            e =>
            {
                // CR0.NE is host-owned (guest/host mask) and the guest writes it differently from the read shadow.
                Assert.Equal(VmxExitReason.ControlRegisterAccess, e.Reason);
                Assert.Equal(ControlRegisterAccessQualification.MovCr(0, toCr: true, generalPurposeRegister: 0), e.ControlRegisterAccess);
                Assert.Equal(ins["mov cr0"].Length, e.InstructionLength);
            },
            e =>
            {
                Assert.Equal(VmxExitReason.MovDr, e.Reason);
                Assert.Equal(1, e.MovDr.DebugRegister);
                Assert.False(e.MovDr.IsMovFromDr);
                Assert.Equal(1, e.MovDr.GeneralPurposeRegister); // ECX
                Assert.Equal(ins["mov dr1"].Length, e.InstructionLength);
            },
            e =>
            {
                Assert.Equal(VmxExitReason.Invlpg, e.Reason);
                Assert.Equal(HarnessGuest.InvlpgAddress, e.LinearAddressQualification);
                Assert.Equal(ins["invlpg"].Length, e.InstructionLength);
            },
            e =>
            {
                Assert.Equal(VmxExitReason.Rdtsc, e.Reason);
                Assert.Equal(ins["rdtsc"].Length, e.InstructionLength);
            },
            e =>
            {
                Assert.Equal(VmxExitReason.Rdmsr, e.Reason);
                Assert.Equal(ins["rdmsr"].Length, e.InstructionLength);
            },
            e =>
            {
                Assert.Equal(VmxExitReason.ExceptionOrNmi, e.Reason);
                Assert.Equal(InterruptionInformation.Create(6, InterruptionType.HardwareException), e.ExitInterruption);
            },
            e =>
            {
                Assert.Equal(VmxExitReason.ExceptionOrNmi, e.Reason);
                Assert.Equal(InterruptionInformation.Create(3, InterruptionType.SoftwareException), e.ExitInterruption);
                Assert.Equal(ins["int3"].Length, e.InstructionLength);
            },
            e =>
            {
                // Loading selector 0x08 with a GDT limit of 0: #GP with the selector as error code.
                Assert.Equal(VmxExitReason.ExceptionOrNmi, e.Reason);
                Assert.Equal(InterruptionInformation.Create(13, InterruptionType.HardwareException, errorCodeValid: true), e.ExitInterruption);
                Assert.Equal(8u, e.InterruptionErrorCode);
            },
            e =>
            {
                Assert.Equal(VmxExitReason.Hlt, e.Reason);
                Assert.Equal(ins["hlt"].Length, e.InstructionLength);
            });
    }

    // The guest runs with paging off, so every access is "the translation of a linear address" (SDM §28.2.1 Table 28-7 bits 7–8).
    private static EptViolationQualification Linear(EptViolationQualification walk) =>
        new(walk.Value | EptViolationQualification.ForLinearAddress(translationOfLinearAddress: true).Value);

    private static void AssertViolation(EptViolationQualification expected, EptViolationQualification actual)
    {
        Assert.Equal(expected.WasRead, actual.WasRead);
        Assert.Equal(expected.WasWrite, actual.WasWrite);
        Assert.Equal(expected.WasInstructionFetch, actual.WasInstructionFetch);
        Assert.Equal(expected.Permissions, actual.Permissions);
        Assert.Equal(expected.GuestLinearAddressValid, actual.GuestLinearAddressValid);
        Assert.Equal(expected.IsTranslationOfLinearAddress, actual.IsTranslationOfLinearAddress);
        Assert.Equal(expected.Value & 0x1FF, actual.Value & 0x1FF);
    }
}
