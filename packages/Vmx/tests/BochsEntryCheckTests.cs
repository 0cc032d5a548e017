using VmmKit.Vmx.Tests.Bochs;

namespace VmmKit.Vmx.Tests;

/// <summary>
/// Differential VM-entry tests: VMCS states that each break one SDM rule (controls §27.2.1, host state §27.2.2–27.2.4,
/// guest state §27.3.1) are launched in one Bochs boot; <see cref="VmEntryChecks"/> must give the same verdict for every one.
/// </summary>
public class BochsEntryCheckTests
{
    // The harness host is 32-bit protected mode with paging (no IA-32e); natural-width fields can only be written to 32 bits.
    private static readonly VmEntryEnvironment BochsHost = new()
    {
        HostInIa32eMode = false,
        PhysicalAddressWidth = 39,
        CurrentVmcsPointer = VmxHarnessImage.VmcsRegion,
        VmxonPointer = VmxHarnessImage.VmxonRegion,
        // Scratch page 0x19000 is zero in the harness: its "revision identifier" is 0.
        ReadPhysical32 = _ => 0,
    };

    private const ulong Scratch = 0x19000;
    private const ulong TooWide = 1ul << 52;

    [Theory]
    [InlineData(BochsHarness.Haswell)]
    [InlineData(BochsHarness.Skylake)]
    public void Every_broken_vmcs_gets_the_same_verdict_from_VmEntryChecks_and_Bochs(string cpuModel)
    {
        var caps = BochsHarness.CapabilitiesOf(cpuModel);
        using var guest = new HarnessGuest();
        var valid = BochsHarness.ValidPvhVmcs(caps, guest);
        var checks = new VmEntryChecks(caps);
        Assert.True(checks.Check(valid, BochsHost).Succeeded, checks.Check(valid, BochsHost).ToString());

        var cases = new List<HarnessCase> { new("valid", valid) };
        foreach (var (name, mutate) in Mutations(caps))
        {
            var v = valid.Clone();
            mutate(v);
            cases.Add(new HarnessCase(name, v));
        }
        Assert.True(cases.Count >= 61, $"only {cases.Count - 1} broken states");

        var image = VmxHarnessImage.Build(cases, guest.Memory);
        var log = HarnessLog.Parse(BochsMachine.Run(image, cpuModel));
        Assert.Empty(log.Problems);

        var disagreements = new List<string>();
        for (int i = 0; i < cases.Count; i++)
        {
            var bochs = log.Verdict(i);
            var ours = checks.Check(cases[i].Vmcs, BochsHost);
            if (i > 0 && ours.Succeeded)
                disagreements.Add($"{cases[i].Name}: VmEntryChecks accepts a state that breaks an SDM rule (Bochs: {bochs})");
            if (!SameVerdict(ours, bochs))
                disagreements.Add($"{cases[i].Name}: VmEntryChecks {ours}; Bochs {bochs}");
        }
        Assert.True(disagreements.Count == 0, string.Join("\n", disagreements));
    }

    private static bool SameVerdict(VmEntryCheckResult ours, VmExit bochs) => ours.Outcome switch
    {
        VmExitOutcome.VmExit => bochs.Outcome == VmExitOutcome.VmExit,
        VmExitOutcome.VmFailValid => bochs.Outcome == VmExitOutcome.VmFailValid && bochs.Error == ours.Error,
        VmExitOutcome.EntryFailure => bochs.Outcome == VmExitOutcome.EntryFailure && bochs.Reason == ours.ExitReason &&
                                      bochs.Qualification == (ulong)ours.Qualification,
        _ => false,
    };

    private static uint FirstBit(uint mask)
    {
        for (int b = 0; b < 32; b++)
            if ((mask & (1u << b)) != 0)
                return 1u << b;
        return 0;
    }

    private static void Or(Vmcs v, VmcsField f, ulong bits) => v.Write(f, v.Read(f) | bits);
    private static void AndNot(Vmcs v, VmcsField f, ulong bits) => v.Write(f, v.Read(f) & ~bits);
    private static void Secondary(Vmcs v, SecondaryProcessorBasedControls bits) => Or(v, VmcsField.SecondaryProcessorBasedVmExecutionControls, (uint)bits);
    private static void Primary(Vmcs v, PrimaryProcessorBasedControls bits) => Or(v, VmcsField.PrimaryProcessorBasedVmExecutionControls, (uint)bits);
    private static void Pin(Vmcs v, PinBasedControls bits) => Or(v, VmcsField.PinBasedVmExecutionControls, (uint)bits);

    private static IEnumerable<(string, Action<Vmcs>)> Mutations(VmxCapabilities caps)
    {
        // §27.2.1.1 VM-execution controls (VMfailValid 7)
        yield return ("pin-based allowed 1-settings", v => Or(v, VmcsField.PinBasedVmExecutionControls, FirstBit(~caps.PinBased.MayBeOne)));
        if (caps.PinBased.MustBeOne != 0)
            yield return ("pin-based allowed 0-settings", v => AndNot(v, VmcsField.PinBasedVmExecutionControls, FirstBit(caps.PinBased.MustBeOne)));
        yield return ("primary allowed 1-settings", v => Or(v, VmcsField.PrimaryProcessorBasedVmExecutionControls, FirstBit(~caps.PrimaryProcessorBased.MayBeOne)));
        if (caps.PrimaryProcessorBased.MustBeOne != 0)
            yield return ("primary allowed 0-settings", v => AndNot(v, VmcsField.PrimaryProcessorBasedVmExecutionControls, FirstBit(caps.PrimaryProcessorBased.MustBeOne)));
        yield return ("secondary allowed 1-settings", v => Or(v, VmcsField.SecondaryProcessorBasedVmExecutionControls, FirstBit(~caps.SecondaryProcessorBased.MayBeOne)));
        yield return ("CR3-target count 5", v => v.Write(VmcsField.Cr3TargetCount, 5));
        yield return ("I/O bitmap A misaligned", v => { Primary(v, PrimaryProcessorBasedControls.UseIoBitmaps); v.Write(VmcsField.IoBitmapAAddress, VmxHarnessImage.IoBitmapA + 8); v.Write(VmcsField.IoBitmapBAddress, VmxHarnessImage.IoBitmapB); });
        yield return ("I/O bitmap B beyond MAXPHYADDR", v => { Primary(v, PrimaryProcessorBasedControls.UseIoBitmaps); v.Write(VmcsField.IoBitmapAAddress, VmxHarnessImage.IoBitmapA); v.Write(VmcsField.IoBitmapBAddress, TooWide); });
        yield return ("MSR bitmap misaligned", v => { Primary(v, PrimaryProcessorBasedControls.UseMsrBitmaps); v.Write(VmcsField.MsrBitmapsAddress, VmxHarnessImage.MsrBitmap + 0x100); });
        yield return ("MSR bitmap beyond MAXPHYADDR", v => { Primary(v, PrimaryProcessorBasedControls.UseMsrBitmaps); v.Write(VmcsField.MsrBitmapsAddress, TooWide | VmxHarnessImage.MsrBitmap); });
        yield return ("virtual NMIs without NMI exiting", v => Pin(v, PinBasedControls.VirtualNmis));
        yield return ("NMI-window exiting without virtual NMIs", v => { Pin(v, PinBasedControls.NmiExiting); Primary(v, PrimaryProcessorBasedControls.NmiWindowExiting); });
        yield return ("virtual-APIC address misaligned", v => { Primary(v, PrimaryProcessorBasedControls.UseTprShadow); v.Write(VmcsField.VirtualApicAddress, Scratch + 0x80); });
        yield return ("TPR threshold bits 31:4", v => { Primary(v, PrimaryProcessorBasedControls.UseTprShadow); v.Write(VmcsField.VirtualApicAddress, Scratch); v.Write(VmcsField.TprThreshold, 0x10); });
        yield return ("APIC-access address misaligned", v => { Secondary(v, SecondaryProcessorBasedControls.VirtualizeApicAccesses); v.Write(VmcsField.ApicAccessAddress, Scratch + 4); });
        yield return ("virtualize x2APIC without TPR shadow", v => Secondary(v, SecondaryProcessorBasedControls.VirtualizeX2ApicMode));
        yield return ("virtualize x2APIC with APIC accesses", v =>
        {
            Primary(v, PrimaryProcessorBasedControls.UseTprShadow);
            v.Write(VmcsField.VirtualApicAddress, Scratch);
            v.Write(VmcsField.ApicAccessAddress, Scratch + 0x1000);
            Secondary(v, SecondaryProcessorBasedControls.VirtualizeX2ApicMode | SecondaryProcessorBasedControls.VirtualizeApicAccesses);
        });
        yield return ("VPID 0 with enable VPID", v => { Secondary(v, SecondaryProcessorBasedControls.EnableVpid); v.Write(VmcsField.VirtualProcessorIdentifier, 0); });
        yield return ("EPTP memory type 3", v => v.Write(VmcsField.EptPointer, (v.Read(VmcsField.EptPointer) & ~7ul) | 3));
        yield return ("EPTP page-walk length 2", v => v.Write(VmcsField.EptPointer, (v.Read(VmcsField.EptPointer) & ~0x38ul) | (1 << 3)));
        yield return ("EPTP reserved bit 7", v => Or(v, VmcsField.EptPointer, 1 << 7));
        yield return ("EPTP beyond MAXPHYADDR", v => Or(v, VmcsField.EptPointer, TooWide));
        yield return ("unrestricted guest without EPT", v => AndNot(v, VmcsField.SecondaryProcessorBasedVmExecutionControls, (uint)SecondaryProcessorBasedControls.EnableEpt));
        // §27.2.1.2 VM-exit controls
        yield return ("VM-exit allowed 1-settings", v => Or(v, VmcsField.VmExitControls, FirstBit(~caps.VmExit.MayBeOne)));
        if (caps.VmExit.MustBeOne != 0)
            yield return ("VM-exit allowed 0-settings", v => AndNot(v, VmcsField.VmExitControls, FirstBit(caps.VmExit.MustBeOne)));
        yield return ("save preemption timer without the timer", v => Or(v, VmcsField.VmExitControls, (uint)VmExitControls.SaveVmxPreemptionTimerValue));
        yield return ("VM-exit MSR-store area misaligned", v => { v.Write(VmcsField.VmExitMsrStoreCount, 1); v.Write(VmcsField.VmExitMsrStoreAddress, Scratch + 8); });
        yield return ("VM-exit MSR-load area misaligned", v => { v.Write(VmcsField.VmExitMsrLoadCount, 1); v.Write(VmcsField.VmExitMsrLoadAddress, Scratch + 4); });
        yield return ("VM-exit MSR-load area beyond MAXPHYADDR", v => { v.Write(VmcsField.VmExitMsrLoadCount, 2); v.Write(VmcsField.VmExitMsrLoadAddress, TooWide); });
        // §27.2.1.3 VM-entry controls
        yield return ("VM-entry allowed 1-settings", v => Or(v, VmcsField.VmEntryControls, FirstBit(~caps.VmEntry.MayBeOne)));
        if (caps.VmEntry.MustBeOne != 0)
            yield return ("VM-entry allowed 0-settings", v => AndNot(v, VmcsField.VmEntryControls, FirstBit(caps.VmEntry.MustBeOne)));
        yield return ("VM-entry MSR-load area misaligned", v => { v.Write(VmcsField.VmEntryMsrLoadCount, 1); v.Write(VmcsField.VmEntryMsrLoadAddress, Scratch + 12); });
        // Not differential: "entry to SMM" outside SMM is a VM-entry control check in the SDM (§27.2.1.3, VMfailValid 7);
        // Bochs 2.7 instead fails it among the guest-state checks ("SMM guest should block SMI", exit reason 33).
        yield return ("deactivate dual-monitor treatment outside SMM", v => Or(v, VmcsField.VmEntryControls, (uint)VmEntryControls.DeactivateDualMonitorTreatment));
        yield return ("inject reserved interruption type 1", v => v.Write(VmcsField.VmEntryInterruptionInformation, 0x8000_0120));
        yield return ("inject NMI with vector 3", v => v.Write(VmcsField.VmEntryInterruptionInformation, InterruptionInformation.Create(3, InterruptionType.Nmi).Value));
        yield return ("inject hardware exception vector 32", v => v.Write(VmcsField.VmEntryInterruptionInformation, InterruptionInformation.Create(32, InterruptionType.HardwareException).Value));
        yield return ("inject with reserved bit 20", v => v.Write(VmcsField.VmEntryInterruptionInformation, InterruptionInformation.Create(0x20, InterruptionType.ExternalInterrupt).Value | (1u << 20)));
        yield return ("inject software interrupt with length 16", v => { v.Write(VmcsField.VmEntryInterruptionInformation, InterruptionInformation.Create(0x80, InterruptionType.SoftwareInterrupt).Value); v.Write(VmcsField.VmEntryInstructionLength, 16); });
        if (!caps.Misc.ZeroLengthInstructionInjection)
            yield return ("inject software exception with length 0", v => { v.Write(VmcsField.VmEntryInterruptionInformation, InterruptionInformation.Create(3, InterruptionType.SoftwareException).Value); v.Write(VmcsField.VmEntryInstructionLength, 0); });
        yield return ("inject #GP without its error code", v => v.Write(VmcsField.VmEntryInterruptionInformation, InterruptionInformation.Create(13, InterruptionType.HardwareException).Value));
        yield return ("inject software interrupt with an error code", v => { v.Write(VmcsField.VmEntryInterruptionInformation, InterruptionInformation.Create(0x80, InterruptionType.SoftwareInterrupt, errorCodeValid: true).Value); v.Write(VmcsField.VmEntryInstructionLength, 2); });
        yield return ("inject #GP with error code bits 30:16", v => { v.Write(VmcsField.VmEntryInterruptionInformation, InterruptionInformation.Create(13, InterruptionType.HardwareException, errorCodeValid: true).Value); v.Write(VmcsField.VmEntryExceptionErrorCode, 0x1_0000); });

        // §27.2.2–27.2.4 host state (VMfailValid 8)
        yield return ("host CR0.PG clear", v => AndNot(v, VmcsField.HostCr0, VmcsBuilder.Cr0Pg));
        yield return ("host CR0.NE clear", v => AndNot(v, VmcsField.HostCr0, VmcsBuilder.Cr0Ne));
        yield return ("host CR4.VMXE clear", v => AndNot(v, VmcsField.HostCr4, VmcsBuilder.Cr4Vmxe));
        if (FirstBit(~(uint)caps.Cr4Fixed1) != 0)
            yield return ("host CR4 bit outside FIXED1", v => Or(v, VmcsField.HostCr4, FirstBit(~(uint)caps.Cr4Fixed1)));
        yield return ("host ES selector RPL 1", v => v.Write(VmcsField.HostEsSelector, VmxHarnessImage.DataSelector | 1));
        yield return ("host CS selector TI", v => v.Write(VmcsField.HostCsSelector, VmxHarnessImage.CodeSelector | 4));
        yield return ("host GS selector RPL 3", v => v.Write(VmcsField.HostGsSelector, VmxHarnessImage.DataSelector | 3));
        yield return ("host CS selector null", v => v.Write(VmcsField.HostCsSelector, 0));
        yield return ("host TR selector null", v => v.Write(VmcsField.HostTrSelector, 0));
        yield return ("host TR selector RPL 3", v => v.Write(VmcsField.HostTrSelector, VmxHarnessImage.TssSelector | 3));
        yield return ("host SS null with 32-bit host", v => v.Write(VmcsField.HostSsSelector, 0));
        yield return ("host address-space size outside IA-32e mode", v => Or(v, VmcsField.VmExitControls, (uint)VmExitControls.HostAddressSpaceSize));
        yield return ("IA-32e mode guest from a 32-bit host", v => Or(v, VmcsField.VmEntryControls, (uint)VmEntryControls.Ia32eModeGuest));
        if ((caps.VmExit.MayBeOne & (uint)VmExitControls.LoadIa32Pat) != 0)
            yield return ("host PAT memory type 2", v => { Or(v, VmcsField.VmExitControls, (uint)VmExitControls.LoadIa32Pat); v.Write(VmcsField.HostIa32Pat, 0x0007_0406_0007_0402); });
        if ((caps.VmExit.MayBeOne & (uint)VmExitControls.LoadIa32Efer) != 0)
        {
            yield return ("host EFER reserved bit 3", v => { Or(v, VmcsField.VmExitControls, (uint)VmExitControls.LoadIa32Efer); v.Write(VmcsField.HostIa32Efer, 1 << 3); });
            yield return ("host EFER.LME with 32-bit host", v => { Or(v, VmcsField.VmExitControls, (uint)VmExitControls.LoadIa32Efer); v.Write(VmcsField.HostIa32Efer, VmcsBuilder.EferLme | VmcsBuilder.EferLma); });
        }

        // §27.3.1 guest state (entry failure 33)
        yield return ("guest CR0.NE clear", v => AndNot(v, VmcsField.GuestCr0, VmcsBuilder.Cr0Ne));
        yield return ("guest CR0.PG without PE", v => { AndNot(v, VmcsField.GuestCr0, VmcsBuilder.Cr0Pe); Or(v, VmcsField.GuestCr0, VmcsBuilder.Cr0Pg); });
        yield return ("guest CR4.VMXE clear", v => AndNot(v, VmcsField.GuestCr4, VmcsBuilder.Cr4Vmxe));
        yield return ("guest RFLAGS bit 1 clear", v => v.Write(VmcsField.GuestRflags, 0));
        yield return ("guest RFLAGS reserved bit 3", v => v.Write(VmcsField.GuestRflags, 0x0A));
        yield return ("guest RFLAGS reserved bit 15", v => v.Write(VmcsField.GuestRflags, 0x8002));
        yield return ("guest RFLAGS reserved bit 22", v => v.Write(VmcsField.GuestRflags, 0x40_0002));
        yield return ("guest CS type 1 (data read-only)", v => v.Write(VmcsField.GuestCsAccessRights, 0xC091));
        yield return ("guest CS not present", v => v.Write(VmcsField.GuestCsAccessRights, 0xC01B));
        yield return ("guest CS system descriptor", v => v.Write(VmcsField.GuestCsAccessRights, 0xC08B));
        yield return ("guest CS reserved access-rights bit 8", v => v.Write(VmcsField.GuestCsAccessRights, 0xC19B));
        yield return ("guest CS limit 4 GiB with G = 0", v => v.Write(VmcsField.GuestCsAccessRights, 0x409B));
        yield return ("guest CS limit low bits with G = 1", v => v.Write(VmcsField.GuestCsLimit, 0xFFFF_F000));
        yield return ("guest CS type 3 with DPL 3", v => v.Write(VmcsField.GuestCsAccessRights, 0xC0F3));
        yield return ("guest SS code segment", v => v.Write(VmcsField.GuestSsAccessRights, 0xC09B));
        yield return ("guest DS not accessed", v => v.Write(VmcsField.GuestDsAccessRights, 0xC092));
        yield return ("guest DS execute-only code", v => v.Write(VmcsField.GuestDsAccessRights, 0xC099));
        yield return ("guest ES not present", v => v.Write(VmcsField.GuestEsAccessRights, 0xC013));
        yield return ("guest FS system descriptor", v => v.Write(VmcsField.GuestFsAccessRights, 0xC083));
        yield return ("guest GS reserved access-rights bit 17", v => v.Write(VmcsField.GuestGsAccessRights, 0x2_C093));
        yield return ("guest real-mode SS.DPL 3", v => { AndNot(v, VmcsField.GuestCr0, VmcsBuilder.Cr0Pe); v.Write(VmcsField.GuestSsAccessRights, 0xC0F3); });
        yield return ("guest TR unusable", v => v.Write(VmcsField.GuestTrAccessRights, SegmentAccessRights.UnusableBit | 0x8B));
        yield return ("guest TR available TSS", v => v.Write(VmcsField.GuestTrAccessRights, 0x89));
        yield return ("guest TR code/data descriptor", v => v.Write(VmcsField.GuestTrAccessRights, 0x9B));
        yield return ("guest TR not present", v => v.Write(VmcsField.GuestTrAccessRights, 0x0B));
        yield return ("guest TR selector TI", v => v.Write(VmcsField.GuestTrSelector, 0x04));
        yield return ("guest TR limit with G = 1", v => v.Write(VmcsField.GuestTrAccessRights, 0x808B));
        yield return ("guest LDTR usable with type 3", v => v.Write(VmcsField.GuestLdtrAccessRights, 0x83));
        yield return ("guest LDTR usable not present", v => v.Write(VmcsField.GuestLdtrAccessRights, 0x02));
        yield return ("guest GDTR limit above 0xFFFF", v => v.Write(VmcsField.GuestGdtrLimit, 0x1_0000));
        yield return ("guest IDTR limit above 0xFFFF", v => v.Write(VmcsField.GuestIdtrLimit, 0x1_0000));
        yield return ("guest activity state 4", v => v.Write(VmcsField.GuestActivityState, 4));
        yield return ("guest STI and MOV-SS blocking", v => { v.Write(VmcsField.GuestRflags, 0x202); v.Write(VmcsField.GuestInterruptibilityState, 3); });
        yield return ("guest STI blocking with IF = 0", v => v.Write(VmcsField.GuestInterruptibilityState, 1));
        yield return ("guest interruptibility reserved bit 5", v => v.Write(VmcsField.GuestInterruptibilityState, 0x20));
        yield return ("guest SMI blocking outside SMM", v => v.Write(VmcsField.GuestInterruptibilityState, 4));
        yield return ("guest HLT activity under STI blocking", v => { v.Write(VmcsField.GuestRflags, 0x202); v.Write(VmcsField.GuestInterruptibilityState, 1); v.Write(VmcsField.GuestActivityState, 1); });
        // Not differential: pending BS = 1 with RFLAGS.TF = 0 under STI blocking breaks §27.3.1.5, but Bochs 2.7 does not
        // check it (it enters and delivers the pending #DB).
        yield return ("guest LDTR limit with G = 1", v => { v.Write(VmcsField.GuestLdtrAccessRights, 0x8082); v.Write(VmcsField.GuestLdtrLimit, 0xFF); });
        yield return ("guest pending debug exceptions bit 4", v => v.Write(VmcsField.GuestPendingDebugExceptions, 0x10));
        yield return ("guest pending debug exceptions bit 13", v => v.Write(VmcsField.GuestPendingDebugExceptions, 0x2000));
        yield return ("guest inject external interrupt with IF = 0", v => v.Write(VmcsField.VmEntryInterruptionInformation, InterruptionInformation.Create(0x20, InterruptionType.ExternalInterrupt).Value));
        yield return ("guest inject NMI under MOV-SS blocking", v => { v.Write(VmcsField.GuestInterruptibilityState, 2); v.Write(VmcsField.VmEntryInterruptionInformation, InterruptionInformation.Create(2, InterruptionType.Nmi).Value); });
        yield return ("guest inject external interrupt under STI blocking", v => { v.Write(VmcsField.GuestRflags, 0x202); v.Write(VmcsField.GuestInterruptibilityState, 1); v.Write(VmcsField.VmEntryInterruptionInformation, InterruptionInformation.Create(0x20, InterruptionType.ExternalInterrupt).Value); });
        if ((caps.VmEntry.MayBeOne & (uint)VmEntryControls.LoadIa32Efer) != 0)
        {
            yield return ("guest EFER.LMA outside IA-32e mode", v => { Or(v, VmcsField.VmEntryControls, (uint)VmEntryControls.LoadIa32Efer); v.Write(VmcsField.GuestIa32Efer, VmcsBuilder.EferLma); });
            yield return ("guest EFER reserved bit 3", v => { Or(v, VmcsField.VmEntryControls, (uint)VmEntryControls.LoadIa32Efer); v.Write(VmcsField.GuestIa32Efer, 1 << 3); });
        }
        if ((caps.VmEntry.MayBeOne & (uint)VmEntryControls.LoadIa32Pat) != 0)
            yield return ("guest PAT memory type 3", v => { Or(v, VmcsField.VmEntryControls, (uint)VmEntryControls.LoadIa32Pat); v.Write(VmcsField.GuestIa32Pat, 0x0007_0406_0307_0406); });
        yield return ("VMCS link pointer misaligned", v => v.Write(VmcsField.VmcsLinkPointer, Scratch + 0x10));
        yield return ("VMCS link pointer beyond MAXPHYADDR", v => v.Write(VmcsField.VmcsLinkPointer, TooWide));
        yield return ("VMCS link pointer is the current VMCS", v => v.Write(VmcsField.VmcsLinkPointer, VmxHarnessImage.VmcsRegion));
        yield return ("VMCS link pointer revision mismatch", v => v.Write(VmcsField.VmcsLinkPointer, Scratch));
    }
}
