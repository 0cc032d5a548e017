namespace VmmKit.Vmx;

/// <summary>
/// The individual VM-entry checks of SDM Vol. 3C chapter 27: §27.2.1 (VMX controls, VMfailValid 7),
/// §27.2.2–27.2.4 (host state, VMfailValid 8) and §27.3.1 (guest state, entry failure 33).
/// </summary>
public enum VmEntryCheck
{
    /// <summary>No check failed.</summary>
    None = 0,

    // §27.1 instruction-level checks
    /// <summary>VMLAUNCH with a VMCS whose launch state is not clear (error 4).</summary>
    LaunchStateNotClear,
    /// <summary>VMRESUME with a VMCS whose launch state is not launched (error 5).</summary>
    LaunchStateNotLaunched,

    // §27.2.1.1 VM-execution control fields
    /// <summary>Pin-based controls violate IA32_VMX_(TRUE_)PINBASED_CTLS.</summary>
    PinBasedControlsNotAllowed,
    /// <summary>Primary processor-based controls violate IA32_VMX_(TRUE_)PROCBASED_CTLS.</summary>
    PrimaryControlsNotAllowed,
    /// <summary>Secondary processor-based controls violate IA32_VMX_PROCBASED_CTLS2.</summary>
    SecondaryControlsNotAllowed,
    /// <summary>Tertiary processor-based controls violate IA32_VMX_PROCBASED_CTLS3.</summary>
    TertiaryControlsNotAllowed,
    /// <summary>CR3-target count greater than IA32_VMX_MISC[24:16].</summary>
    Cr3TargetCountTooLarge,
    /// <summary>I/O bitmap address not 4-KByte aligned or beyond the physical-address width.</summary>
    IoBitmapAddressInvalid,
    /// <summary>MSR bitmap address not 4-KByte aligned or beyond the physical-address width.</summary>
    MsrBitmapAddressInvalid,
    /// <summary>Virtual-APIC address not 4-KByte aligned or beyond the physical-address width.</summary>
    VirtualApicAddressInvalid,
    /// <summary>TPR threshold bits 31:4 not zero.</summary>
    TprThresholdReservedBits,
    /// <summary>"Virtual NMIs" set while "NMI exiting" is clear.</summary>
    VirtualNmisWithoutNmiExiting,
    /// <summary>"NMI-window exiting" set while "virtual NMIs" is clear.</summary>
    NmiWindowExitingWithoutVirtualNmis,
    /// <summary>APIC-access address not 4-KByte aligned or beyond the physical-address width.</summary>
    ApicAccessAddressInvalid,
    /// <summary>x2APIC virtualization, APIC-register virtualization or virtual-interrupt delivery without "use TPR shadow".</summary>
    ApicVirtualizationWithoutTprShadow,
    /// <summary>"Virtualize x2APIC mode" together with "virtualize APIC accesses".</summary>
    X2ApicWithApicAccesses,
    /// <summary>"Virtual-interrupt delivery" without "external-interrupt exiting".</summary>
    VirtualInterruptDeliveryWithoutExternalInterruptExiting,
    /// <summary>Posted-interrupt processing misconfigured (needs virtual-interrupt delivery, acknowledge interrupt on exit, a vector below 256, a 64-byte aligned descriptor).</summary>
    PostedInterruptsInvalid,
    /// <summary>"Enable VPID" with VPID 0.</summary>
    VpidZero,
    /// <summary>EPT pointer invalid: memory type, page-walk length, A/D enable, reserved bits 11:7 or address width.</summary>
    EptPointerInvalid,
    /// <summary>"Enable PML" without "enable EPT", or a misaligned PML address.</summary>
    PmlInvalid,
    /// <summary>"Unrestricted guest" without "enable EPT".</summary>
    UnrestrictedGuestWithoutEpt,
    /// <summary>"Mode-based execute control" or "sub-page write permissions" without "enable EPT".</summary>
    EptFeatureWithoutEpt,
    /// <summary>VMREAD/VMWRITE bitmap address invalid with VMCS shadowing.</summary>
    VmcsShadowingBitmapInvalid,
    /// <summary>Virtualization-exception information address invalid with "EPT-violation #VE".</summary>
    VirtualizationExceptionAddressInvalid,

    // §27.2.1.2 VM-exit control fields
    /// <summary>VM-exit controls violate IA32_VMX_(TRUE_)EXIT_CTLS.</summary>
    VmExitControlsNotAllowed,
    /// <summary>"Save VMX-preemption timer value" without "activate VMX-preemption timer".</summary>
    SavePreemptionTimerWithoutTimer,
    /// <summary>VM-exit MSR-store area misaligned or beyond the physical-address width.</summary>
    VmExitMsrStoreAreaInvalid,
    /// <summary>VM-exit MSR-load area misaligned or beyond the physical-address width.</summary>
    VmExitMsrLoadAreaInvalid,

    // §27.2.1.3 VM-entry control fields
    /// <summary>VM-entry controls violate IA32_VMX_(TRUE_)ENTRY_CTLS.</summary>
    VmEntryControlsNotAllowed,
    /// <summary>Event injection: reserved interruption type (1), or "other event" without monitor-trap-flag support.</summary>
    EventInjectionTypeInvalid,
    /// <summary>Event injection: NMI vector not 2, hardware exception vector above 31, other-event vector not 0.</summary>
    EventInjectionVectorInvalid,
    /// <summary>Event injection: deliver-error-code inconsistent with the type/vector or with unrestricted guest CR0.PE = 0.</summary>
    EventInjectionErrorCodeInconsistent,
    /// <summary>Event injection: interruption-information bits 30:12 not zero.</summary>
    EventInjectionReservedBits,
    /// <summary>Event injection: error code bits 31:16 (of a delivered error code) not zero.</summary>
    EventInjectionErrorCodeReservedBits,
    /// <summary>Event injection: instruction length 0 (without IA32_VMX_MISC[30]) or above 15 for software events.</summary>
    EventInjectionInstructionLengthInvalid,
    /// <summary>"Entry to SMM" or "deactivate dual-monitor treatment" outside SMM.</summary>
    EntryToSmmOutsideSmm,
    /// <summary>VM-entry MSR-load area misaligned or beyond the physical-address width.</summary>
    VmEntryMsrLoadAreaInvalid,

    // §27.2.2 host control registers and MSRs, §27.2.3 host segment and descriptor-table registers, §27.2.4 address-space size
    /// <summary>Host CR0 violates IA32_VMX_CR0_FIXED0/FIXED1.</summary>
    HostCr0Invalid,
    /// <summary>Host CR4 violates IA32_VMX_CR4_FIXED0/FIXED1.</summary>
    HostCr4Invalid,
    /// <summary>Host CR3 beyond the physical-address width.</summary>
    HostCr3Invalid,
    /// <summary>Host IA32_SYSENTER_ESP or _EIP not canonical.</summary>
    HostSysenterNotCanonical,
    /// <summary>Host IA32_PAT (loaded on exit) names an invalid memory type.</summary>
    HostPatInvalid,
    /// <summary>Host IA32_EFER (loaded on exit) has reserved bits or LMA/LME inconsistent with the host address-space size.</summary>
    HostEferInvalid,
    /// <summary>A host selector has RPL or TI set.</summary>
    HostSelectorRplTi,
    /// <summary>Host CS selector is null.</summary>
    HostCsNull,
    /// <summary>Host TR selector is null.</summary>
    HostTrNull,
    /// <summary>Host SS selector is null with a 32-bit host.</summary>
    HostSsNull,
    /// <summary>A host FS/GS/GDTR/IDTR/TR base is not canonical.</summary>
    HostBaseNotCanonical,
    /// <summary>Outside IA-32e mode: "host address-space size" or "IA-32e mode guest" is set; inside: "host address-space size" is clear.</summary>
    HostAddressSpaceSizeInvalid,
    /// <summary>64-bit host with CR4.PAE = 0 or a non-canonical RIP.</summary>
    Host64BitStateInvalid,
    /// <summary>32-bit host with CR4.PCIDE = 1 or RIP bits 63:32 set.</summary>
    Host32BitStateInvalid,

    // §27.3.1.1 guest control registers, debug registers and MSRs
    /// <summary>Guest CR0 violates the fixed bits (PE/PG exempt with unrestricted guest) or sets PG without PE.</summary>
    GuestCr0Invalid,
    /// <summary>Guest CR4 violates IA32_VMX_CR4_FIXED0/FIXED1.</summary>
    GuestCr4Invalid,
    /// <summary>Guest CR3 beyond the physical-address width.</summary>
    GuestCr3Invalid,
    /// <summary>IA32_DEBUGCTL reserved bits or DR7 bits 63:32 set with "load debug controls".</summary>
    GuestDebugControlsInvalid,
    /// <summary>IA-32e mode guest without CR0.PG and CR4.PAE, or CR4.PCIDE outside IA-32e mode.</summary>
    GuestIa32eModeInconsistent,
    /// <summary>Guest IA32_SYSENTER_ESP or _EIP not canonical.</summary>
    GuestSysenterNotCanonical,
    /// <summary>Guest IA32_PAT (loaded on entry) names an invalid memory type.</summary>
    GuestPatInvalid,
    /// <summary>Guest IA32_EFER (loaded on entry) has reserved bits or LMA/LME inconsistent.</summary>
    GuestEferInvalid,

    // §27.3.1.2 guest segment registers
    /// <summary>Guest TR or LDTR selector has TI set.</summary>
    GuestSelectorTi,
    /// <summary>Guest SS.RPL differs from CS.RPL (no unrestricted guest).</summary>
    GuestSsRplNotCsRpl,
    /// <summary>A guest segment base is invalid (virtual-8086 base, non-canonical, or bits 63:32 set).</summary>
    GuestSegmentBaseInvalid,
    /// <summary>A virtual-8086 guest segment limit is not 0xFFFF.</summary>
    GuestV86LimitInvalid,
    /// <summary>A virtual-8086 guest segment access-rights value is not 0xF3.</summary>
    GuestV86AccessRightsInvalid,
    /// <summary>A guest segment type is invalid for its register.</summary>
    GuestSegmentTypeInvalid,
    /// <summary>A guest code/data segment has S = 0.</summary>
    GuestSegmentNotCodeOrData,
    /// <summary>A guest segment DPL violates the SDM rules for CS, SS or DS–GS.</summary>
    GuestSegmentDplInvalid,
    /// <summary>A usable guest segment is not present.</summary>
    GuestSegmentNotPresent,
    /// <summary>Guest access-rights reserved bits 11:8 or 31:17 set.</summary>
    GuestSegmentReservedBits,
    /// <summary>Guest segment limit and granularity inconsistent.</summary>
    GuestSegmentLimitGranularity,
    /// <summary>IA-32e mode guest CS with both L and D/B set.</summary>
    GuestCsLongAndDefaultBig,
    /// <summary>Guest TR is unusable, not a busy TSS, has S = 1, is not present or is otherwise malformed.</summary>
    GuestTrInvalid,
    /// <summary>A usable guest LDTR is not an LDT, has S = 1, is not present or is otherwise malformed.</summary>
    GuestLdtrInvalid,

    // §27.3.1.3 descriptor-table registers, §27.3.1.4 RIP and RFLAGS
    /// <summary>Guest GDTR/IDTR base not canonical or limit bits 31:16 set.</summary>
    GuestDescriptorTableInvalid,
    /// <summary>Guest RIP bits 63:32 set outside 64-bit mode, or non-canonical in 64-bit mode.</summary>
    GuestRipInvalid,
    /// <summary>Guest RFLAGS reserved bits set or bit 1 clear.</summary>
    GuestRflagsReservedBits,
    /// <summary>Guest RFLAGS.VM set with an IA-32e mode guest or CR0.PE = 0.</summary>
    GuestRflagsVmInvalid,
    /// <summary>Guest RFLAGS.IF = 0 while injecting an external interrupt.</summary>
    GuestRflagsIfForInterruptInjection,

    // §27.3.1.5 non-register state
    /// <summary>Guest activity state not supported, or HLT with SS.DPL ≠ 0, or non-active with STI/MOV-SS blocking.</summary>
    GuestActivityStateInvalid,
    /// <summary>Guest interruptibility state reserved bits, STI and MOV-SS blocking together, STI blocking with IF = 0, SMI blocking outside SMM.</summary>
    GuestInterruptibilityInvalid,
    /// <summary>Guest interruptibility blocks an injected external interrupt or NMI.</summary>
    GuestInterruptibilityBlocksInjection,
    /// <summary>Guest pending debug exceptions reserved bits set, or BS inconsistent with RFLAGS.TF and IA32_DEBUGCTL.BTF.</summary>
    GuestPendingDebugExceptionsInvalid,
    /// <summary>VMCS link pointer not all ones and misaligned, too wide, the wrong revision or the current VMCS (qualification 4).</summary>
    GuestVmcsLinkPointerInvalid,
    /// <summary>PAE paging with EPT: a PDPTE field has reserved bits set (qualification 2).</summary>
    GuestPdpteInvalid,
}
