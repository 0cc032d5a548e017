namespace VmmKit.Vmx.Emulator;

/// <summary>
/// The VMX capability MSRs (SDM Vol. 3D Appendix A) of <see cref="EmulatedProcessor"/>: which controls it honours.
/// Pass <see cref="Create"/> to <see cref="VmcsBuilder"/> so the controls it writes are ones this processor implements.
/// </summary>
public static class EmulatedCapabilities
{
    /// <summary>VMCS revision identifier reported in IA32_VMX_BASIC.</summary>
    public const uint RevisionIdentifier = 1;

    private const uint PinAllowed = (uint)(PinBasedControls.ExternalInterruptExiting | PinBasedControls.NmiExiting | PinBasedControls.VirtualNmis
        | PinBasedControls.ActivateVmxPreemptionTimer);
    private const uint PinDefault1 = (1u << 1) | (1u << 2) | (1u << 4);

    private const uint PrimaryAllowed = (uint)(PrimaryProcessorBasedControls.UseTscOffsetting | PrimaryProcessorBasedControls.HltExiting
        | PrimaryProcessorBasedControls.RdtscExiting | PrimaryProcessorBasedControls.UnconditionalIoExiting
        | PrimaryProcessorBasedControls.Cr3LoadExiting | PrimaryProcessorBasedControls.Cr3StoreExiting
        | PrimaryProcessorBasedControls.Cr8LoadExiting | PrimaryProcessorBasedControls.Cr8StoreExiting
        | PrimaryProcessorBasedControls.InterruptWindowExiting | PrimaryProcessorBasedControls.NmiWindowExiting
        | PrimaryProcessorBasedControls.InvlpgExiting | PrimaryProcessorBasedControls.MovDrExiting | PrimaryProcessorBasedControls.PauseExiting
        | PrimaryProcessorBasedControls.UseIoBitmaps | PrimaryProcessorBasedControls.UseMsrBitmaps
        | PrimaryProcessorBasedControls.ActivateSecondaryControls) | PrimaryDefault1;
    // Default1 bits (SDM A.3.2): 1, 4-6, 8, 13-16, 26; the true MSR lets them be 0.
    private const uint PrimaryDefault1 = (1u << 1) | (7u << 4) | (1u << 8) | (0xFu << 13) | (1u << 26);

    private const uint SecondaryAllowed = (uint)(SecondaryProcessorBasedControls.EnableEpt | SecondaryProcessorBasedControls.UnrestrictedGuest
        | SecondaryProcessorBasedControls.DescriptorTableExiting | SecondaryProcessorBasedControls.EnableRdtscp
        | SecondaryProcessorBasedControls.EnableInvpcid | SecondaryProcessorBasedControls.UseTscScaling
        | SecondaryProcessorBasedControls.WbinvdExiting);

    private const uint ExitAllowed = (uint)(VmExitControls.HostAddressSpaceSize | VmExitControls.SaveIa32Efer | VmExitControls.LoadIa32Efer
        | VmExitControls.SaveIa32Pat | VmExitControls.LoadIa32Pat
        | VmExitControls.SaveVmxPreemptionTimerValue) | ExitDefault1;
    private const uint ExitDefault1 = 0x0003_6DFF;

    private const uint EntryAllowed = (uint)(VmEntryControls.Ia32eModeGuest | VmEntryControls.LoadIa32Efer | VmEntryControls.LoadIa32Pat) | EntryDefault1;
    private const uint EntryDefault1 = 0x0000_11FF;

    /// <summary>The capability MSR values by index.</summary>
    public static IReadOnlyDictionary<uint, ulong> Msrs { get; } = new Dictionary<uint, ulong>
    {
        // Basic: revision, 4 KiB VMCS region, write-back, INS/OUTS information, true controls.
        [VmxCapabilityMsr.Ia32VmxBasic] = RevisionIdentifier | (4096UL << 32) | (6UL << 50) | (1UL << 54) | (1UL << 55),
        [VmxCapabilityMsr.Ia32VmxPinbasedCtls] = PinDefault1 | ((ulong)(PinAllowed | PinDefault1) << 32),
        [VmxCapabilityMsr.Ia32VmxTruePinbasedCtls] = ((ulong)(PinAllowed | PinDefault1) << 32),
        [VmxCapabilityMsr.Ia32VmxProcbasedCtls] = PrimaryDefault1 | ((ulong)PrimaryAllowed << 32),
        [VmxCapabilityMsr.Ia32VmxTrueProcbasedCtls] = ((ulong)PrimaryAllowed << 32),
        [VmxCapabilityMsr.Ia32VmxProcbasedCtls2] = (ulong)SecondaryAllowed << 32,
        [VmxCapabilityMsr.Ia32VmxExitCtls] = ExitDefault1 | ((ulong)ExitAllowed << 32),
        [VmxCapabilityMsr.Ia32VmxTrueExitCtls] = ((ulong)ExitAllowed << 32),
        [VmxCapabilityMsr.Ia32VmxEntryCtls] = EntryDefault1 | ((ulong)EntryAllowed << 32),
        [VmxCapabilityMsr.Ia32VmxTrueEntryCtls] = ((ulong)EntryAllowed << 32),
        // Misc: preemption timer rate 0 (one tick per instruction retired), activity state HLT, unrestricted guest LMA store,
        // four CR3-target values (bits 24:16, SDM Vol. 3D §A.6; the VM-entry checks hold CR3-target count to it).
        [VmxCapabilityMsr.Ia32VmxMisc] = (1UL << 5) | (1UL << 6) | (4UL << 16),
        // CR0: PE, NE and PG fixed to 1 except as relaxed by unrestricted guest.
        [VmxCapabilityMsr.Ia32VmxCr0Fixed0] = 0x8000_0021,
        [VmxCapabilityMsr.Ia32VmxCr0Fixed1] = 0xFFFF_FFFF,
        [VmxCapabilityMsr.Ia32VmxCr4Fixed0] = 0x2000,
        [VmxCapabilityMsr.Ia32VmxCr4Fixed1] = 0x0037_27FF,
        [VmxCapabilityMsr.Ia32VmxVmcsEnum] = 0x2E << 1,
        // EPT: 4-level walk, WB, 2M and 1G pages, INVEPT single and all contexts, accessed/dirty flags.
        [VmxCapabilityMsr.Ia32VmxEptVpidCap] = (1UL << 6) | (1UL << 14) | (1UL << 16) | (1UL << 17) | (1UL << 20) | (1UL << 21) | (1UL << 25) | (1UL << 26),
    };

    /// <summary>Builds a <see cref="VmxCapabilities"/> view of <see cref="Msrs"/>.</summary>
    public static VmxCapabilities Create() => VmxCapabilities.FromMsrs(Msrs);
}
