namespace VmmKit.Vmx;

/// <summary>
/// The checks VMLAUNCH/VMRESUME perform before entering a guest (SDM Vol. 3C chapter 27): §27.2.1 VMX controls and
/// §27.2.2–27.2.4 host state (VMfailValid with VM-instruction error 7 or 8), then §27.3.1 guest state (VM-entry
/// failure, exit reason 33). Checks run in the SDM's order, so the first violated rule decides the verdict.
/// MSR-load contents (exit reason 34) are not inspected. Allocation-free.
/// </summary>
public sealed class VmEntryChecks
{
    private readonly VmxCapabilities _caps;

    /// <summary>Creates the checker for a processor with <paramref name="capabilities"/>.</summary>
    public VmEntryChecks(VmxCapabilities capabilities)
    {
        ArgumentNullException.ThrowIfNull(capabilities);
        _caps = capabilities;
    }

    /// <summary>The capabilities the checks use.</summary>
    public VmxCapabilities Capabilities => _caps;

    /// <summary>Checks <paramref name="vmcs"/> as VMLAUNCH (<paramref name="resume"/> false) or VMRESUME would in <paramref name="environment"/>.</summary>
    public VmEntryCheckResult Check(Vmcs vmcs, in VmEntryEnvironment environment, bool resume = false)
    {
        ArgumentNullException.ThrowIfNull(vmcs);
        // §27.1: launch state.
        if (!resume && vmcs.LaunchState != VmcsLaunchState.Clear)
            return VmEntryCheckResult.Fail(VmInstructionError.VmlaunchWithNonClearVmcs, VmEntryCheck.LaunchStateNotClear);
        if (resume && vmcs.LaunchState != VmcsLaunchState.Launched)
            return VmEntryCheckResult.Fail(VmInstructionError.VmresumeWithNonLaunchedVmcs, VmEntryCheck.LaunchStateNotLaunched);

        // §27.2: the control and host-state checks read only control and host-state fields, the capabilities and the
        // environment, except the event-injection checks (which also read guest CR0.PE). Once they all passed, they pass
        // again until one of those inputs changes, so only the event-injection checks run again.
        if (vmcs.CheckedBy == this && vmcs.CheckedVersion == vmcs.ControlAndHostVersion && vmcs.CheckedEnvironment == environment)
        {
            var injection = CheckEventInjection(vmcs, Secondary(vmcs));
            if (injection != VmEntryCheck.None)
                return VmEntryCheckResult.Fail(VmInstructionError.VmEntryWithInvalidControlFields, injection);
        }
        else
        {
            vmcs.CheckedBy = null;
            var c = CheckControls(vmcs, environment);
            if (c != VmEntryCheck.None)
                return VmEntryCheckResult.Fail(VmInstructionError.VmEntryWithInvalidControlFields, c);
            var h = CheckHostState(vmcs, environment);
            if (h != VmEntryCheck.None)
                return VmEntryCheckResult.Fail(VmInstructionError.VmEntryWithInvalidHostStateFields, h);
            vmcs.CheckedBy = this;
            vmcs.CheckedVersion = vmcs.ControlAndHostVersion;
            vmcs.CheckedEnvironment = environment;
        }
        var (g, q) = CheckGuestState(vmcs, environment);
        if (g != VmEntryCheck.None)
            return VmEntryCheckResult.EntryFailure(VmxExitReason.EntryFailureInvalidGuestState, g, q);
        return VmEntryCheckResult.Success;
    }

    // ---------------------------------------------------------------- §27.2.1 controls

    private VmEntryCheck CheckControls(Vmcs v, in VmEntryEnvironment env)
    {
        var pin = (PinBasedControls)v.Read(VmcsField.PinBasedVmExecutionControls);
        var primary = (PrimaryProcessorBasedControls)v.Read(VmcsField.PrimaryProcessorBasedVmExecutionControls);
        var secondary = Secondary(v);

        // §27.2.1.1
        if (!_caps.PinBased.Allows((uint)pin))
            return VmEntryCheck.PinBasedControlsNotAllowed;
        if (!_caps.PrimaryProcessorBased.Allows((uint)primary))
            return VmEntryCheck.PrimaryControlsNotAllowed;
        if ((primary & PrimaryProcessorBasedControls.ActivateSecondaryControls) != 0 && !_caps.SecondaryProcessorBased.Allows((uint)secondary))
            return VmEntryCheck.SecondaryControlsNotAllowed;
        if ((primary & PrimaryProcessorBasedControls.ActivateTertiaryControls) != 0 &&
            ((TertiaryProcessorBasedControls)v.Read(VmcsField.TertiaryProcessorBasedVmExecutionControls) & ~_caps.TertiaryProcessorBasedAllowed) != 0)
            return VmEntryCheck.TertiaryControlsNotAllowed;
        if (v.Read(VmcsField.Cr3TargetCount) > (ulong)_caps.Misc.Cr3TargetCount)
            return VmEntryCheck.Cr3TargetCountTooLarge;
        if ((primary & PrimaryProcessorBasedControls.UseIoBitmaps) != 0 &&
            (!PageAligned(v.Read(VmcsField.IoBitmapAAddress), env) || !PageAligned(v.Read(VmcsField.IoBitmapBAddress), env)))
            return VmEntryCheck.IoBitmapAddressInvalid;
        if ((primary & PrimaryProcessorBasedControls.UseMsrBitmaps) != 0 && !PageAligned(v.Read(VmcsField.MsrBitmapsAddress), env))
            return VmEntryCheck.MsrBitmapAddressInvalid;

        bool tprShadow = (primary & PrimaryProcessorBasedControls.UseTprShadow) != 0;
        if (tprShadow)
        {
            if (!PageAligned(v.Read(VmcsField.VirtualApicAddress), env))
                return VmEntryCheck.VirtualApicAddressInvalid;
            if ((secondary & SecondaryProcessorBasedControls.VirtualInterruptDelivery) == 0 && (v.Read(VmcsField.TprThreshold) & ~0xFul) != 0)
                return VmEntryCheck.TprThresholdReservedBits;
        }
        if ((pin & PinBasedControls.NmiExiting) == 0 && (pin & PinBasedControls.VirtualNmis) != 0)
            return VmEntryCheck.VirtualNmisWithoutNmiExiting;
        if ((pin & PinBasedControls.VirtualNmis) == 0 && (primary & PrimaryProcessorBasedControls.NmiWindowExiting) != 0)
            return VmEntryCheck.NmiWindowExitingWithoutVirtualNmis;
        if ((secondary & SecondaryProcessorBasedControls.VirtualizeApicAccesses) != 0 && !PageAligned(v.Read(VmcsField.ApicAccessAddress), env))
            return VmEntryCheck.ApicAccessAddressInvalid;
        const SecondaryProcessorBasedControls needTpr = SecondaryProcessorBasedControls.VirtualizeX2ApicMode |
            SecondaryProcessorBasedControls.ApicRegisterVirtualization | SecondaryProcessorBasedControls.VirtualInterruptDelivery;
        if (!tprShadow && (secondary & needTpr) != 0)
            return VmEntryCheck.ApicVirtualizationWithoutTprShadow;
        if ((secondary & SecondaryProcessorBasedControls.VirtualizeX2ApicMode) != 0 && (secondary & SecondaryProcessorBasedControls.VirtualizeApicAccesses) != 0)
            return VmEntryCheck.X2ApicWithApicAccesses;
        if ((secondary & SecondaryProcessorBasedControls.VirtualInterruptDelivery) != 0 && (pin & PinBasedControls.ExternalInterruptExiting) == 0)
            return VmEntryCheck.VirtualInterruptDeliveryWithoutExternalInterruptExiting;
        if ((pin & PinBasedControls.ProcessPostedInterrupts) != 0)
        {
            ulong desc = v.Read(VmcsField.PostedInterruptDescriptorAddress);
            var exitCtl = (VmExitControls)v.Read(VmcsField.VmExitControls);
            if ((secondary & SecondaryProcessorBasedControls.VirtualInterruptDelivery) == 0 ||
                (exitCtl & VmExitControls.AcknowledgeInterruptOnExit) == 0 ||
                (v.Read(VmcsField.PostedInterruptNotificationVector) & 0xFF00) != 0 ||
                (desc & 0x3F) != 0 || !env.IsValidPhysicalAddress(desc))
                return VmEntryCheck.PostedInterruptsInvalid;
        }
        if ((secondary & SecondaryProcessorBasedControls.EnableVpid) != 0 && v.Read(VmcsField.VirtualProcessorIdentifier) == 0)
            return VmEntryCheck.VpidZero;
        bool ept = (secondary & SecondaryProcessorBasedControls.EnableEpt) != 0;
        if (ept && !IsValidEptPointer(v.Read(VmcsField.EptPointer), env))
            return VmEntryCheck.EptPointerInvalid;
        if ((secondary & SecondaryProcessorBasedControls.EnablePml) != 0 && (!ept || !PageAligned(v.Read(VmcsField.PmlAddress), env)))
            return VmEntryCheck.PmlInvalid;
        if ((secondary & SecondaryProcessorBasedControls.UnrestrictedGuest) != 0 && !ept)
            return VmEntryCheck.UnrestrictedGuestWithoutEpt;
        if ((secondary & (SecondaryProcessorBasedControls.ModeBasedExecuteControlForEpt | SecondaryProcessorBasedControls.SubPageWritePermissionsForEpt)) != 0 && !ept)
            return VmEntryCheck.EptFeatureWithoutEpt;
        if ((secondary & SecondaryProcessorBasedControls.VmcsShadowing) != 0 &&
            (!PageAligned(v.Read(VmcsField.VmreadBitmapAddress), env) || !PageAligned(v.Read(VmcsField.VmwriteBitmapAddress), env)))
            return VmEntryCheck.VmcsShadowingBitmapInvalid;
        if ((secondary & SecondaryProcessorBasedControls.EptViolationVe) != 0 && !PageAligned(v.Read(VmcsField.VirtualizationExceptionInformationAddress), env))
            return VmEntryCheck.VirtualizationExceptionAddressInvalid;

        // §27.2.1.2 VM-exit controls
        var exit = (VmExitControls)v.Read(VmcsField.VmExitControls);
        if (!_caps.VmExit.Allows((uint)exit))
            return VmEntryCheck.VmExitControlsNotAllowed;
        if ((pin & PinBasedControls.ActivateVmxPreemptionTimer) == 0 && (exit & VmExitControls.SaveVmxPreemptionTimerValue) != 0)
            return VmEntryCheck.SavePreemptionTimerWithoutTimer;
        if (!MsrArea(v, VmcsField.VmExitMsrStoreCount, VmcsField.VmExitMsrStoreAddress, env))
            return VmEntryCheck.VmExitMsrStoreAreaInvalid;
        if (!MsrArea(v, VmcsField.VmExitMsrLoadCount, VmcsField.VmExitMsrLoadAddress, env))
            return VmEntryCheck.VmExitMsrLoadAreaInvalid;

        // §27.2.1.3 VM-entry controls
        var entry = (VmEntryControls)v.Read(VmcsField.VmEntryControls);
        if (!_caps.VmEntry.Allows((uint)entry))
            return VmEntryCheck.VmEntryControlsNotAllowed;
        var injection = CheckEventInjection(v, secondary);
        if (injection != VmEntryCheck.None)
            return injection;
        if (!env.InSmm && (entry & (VmEntryControls.EntryToSmm | VmEntryControls.DeactivateDualMonitorTreatment)) != 0)
            return VmEntryCheck.EntryToSmmOutsideSmm;
        if (!MsrArea(v, VmcsField.VmEntryMsrLoadCount, VmcsField.VmEntryMsrLoadAddress, env))
            return VmEntryCheck.VmEntryMsrLoadAreaInvalid;
        return VmEntryCheck.None;
    }

    private VmEntryCheck CheckEventInjection(Vmcs v, SecondaryProcessorBasedControls secondary)
    {
        var info = new InterruptionInformation((uint)v.Read(VmcsField.VmEntryInterruptionInformation));
        if (!info.IsValid)
            return VmEntryCheck.None;
        var type = info.Type;
        // Type 1 is reserved; type 7 (other event) needs monitor-trap-flag support.
        if (type == InterruptionType.Reserved ||
            (type == InterruptionType.OtherEvent && (_caps.PrimaryProcessorBased.MayBeOne & (uint)PrimaryProcessorBasedControls.MonitorTrapFlag) == 0))
            return VmEntryCheck.EventInjectionTypeInvalid;
        if ((type == InterruptionType.Nmi && info.Vector != 2) ||
            (type == InterruptionType.HardwareException && info.Vector > 31) ||
            (type == InterruptionType.OtherEvent && info.Vector != 0))
            return VmEntryCheck.EventInjectionVectorInvalid;

        bool unrestricted = (secondary & SecondaryProcessorBasedControls.UnrestrictedGuest) != 0;
        bool protectedMode = (v.Read(VmcsField.GuestCr0) & 1) != 0;
        if (info.ErrorCodeValid)
        {
            // Only hardware exceptions deliver error codes, and never to a real-mode unrestricted guest.
            if (type != InterruptionType.HardwareException || (unrestricted && !protectedMode))
                return VmEntryCheck.EventInjectionErrorCodeInconsistent;
        }
        if (!_caps.Basic.NoErrorCodeConsistencyCheck && type == InterruptionType.HardwareException && (!unrestricted || protectedMode))
        {
            bool pushes = info.Vector is 8 or 10 or 11 or 12 or 13 or 14 or 17 or 21;
            if (pushes != info.ErrorCodeValid)
                return VmEntryCheck.EventInjectionErrorCodeInconsistent;
        }
        if (info.HasReservedEntryBits)
            return VmEntryCheck.EventInjectionReservedBits;
        if (info.ErrorCodeValid && (v.Read(VmcsField.VmEntryExceptionErrorCode) & 0xFFFF_0000ul) != 0)
            return VmEntryCheck.EventInjectionErrorCodeReservedBits;
        if (type is InterruptionType.SoftwareInterrupt or InterruptionType.PrivilegedSoftwareException or InterruptionType.SoftwareException)
        {
            ulong length = v.Read(VmcsField.VmEntryInstructionLength);
            if (length > 15 || (length == 0 && !_caps.Misc.ZeroLengthInstructionInjection))
                return VmEntryCheck.EventInjectionInstructionLengthInvalid;
        }
        return VmEntryCheck.None;
    }

    // ---------------------------------------------------------------- §27.2.2–27.2.4 host state

    private VmEntryCheck CheckHostState(Vmcs v, in VmEntryEnvironment env)
    {
        var exit = (VmExitControls)v.Read(VmcsField.VmExitControls);
        var entry = (VmEntryControls)v.Read(VmcsField.VmEntryControls);
        bool host64 = (exit & VmExitControls.HostAddressSpaceSize) != 0;
        ulong cr4 = v.Read(VmcsField.HostCr4);

        // §27.2.2
        ulong cr0 = v.Read(VmcsField.HostCr0);
        if ((cr0 & _caps.Cr0Fixed0) != _caps.Cr0Fixed0 || (cr0 & ~_caps.Cr0Fixed1) != 0)
            return VmEntryCheck.HostCr0Invalid;
        if ((cr4 & _caps.Cr4Fixed0) != _caps.Cr4Fixed0 || (cr4 & ~_caps.Cr4Fixed1) != 0)
            return VmEntryCheck.HostCr4Invalid;
        if (!env.IsValidPhysicalAddress(v.Read(VmcsField.HostCr3)))
            return VmEntryCheck.HostCr3Invalid;
        if (!IsCanonical(v.Read(VmcsField.HostIa32SysenterEsp)) || !IsCanonical(v.Read(VmcsField.HostIa32SysenterEip)))
            return VmEntryCheck.HostSysenterNotCanonical;
        if ((exit & VmExitControls.LoadIa32Pat) != 0 && !IsValidPat(v.Read(VmcsField.HostIa32Pat)))
            return VmEntryCheck.HostPatInvalid;
        if ((exit & VmExitControls.LoadIa32Efer) != 0)
        {
            ulong efer = v.Read(VmcsField.HostIa32Efer);
            bool lma = (efer & VmcsBuilder.EferLma) != 0, lme = (efer & VmcsBuilder.EferLme) != 0;
            if ((efer & ~EferAllowedBits) != 0 || lma != host64 || lme != host64)
                return VmEntryCheck.HostEferInvalid;
        }

        // §27.2.3
        foreach (var f in HostSelectors)
            if ((v.Read(f) & 7) != 0)
                return VmEntryCheck.HostSelectorRplTi;
        if (v.Read(VmcsField.HostCsSelector) == 0)
            return VmEntryCheck.HostCsNull;
        if (v.Read(VmcsField.HostTrSelector) == 0)
            return VmEntryCheck.HostTrNull;
        if (!host64 && v.Read(VmcsField.HostSsSelector) == 0)
            return VmEntryCheck.HostSsNull;
        if (!IsCanonical(v.Read(VmcsField.HostFsBase)) || !IsCanonical(v.Read(VmcsField.HostGsBase)) ||
            !IsCanonical(v.Read(VmcsField.HostGdtrBase)) || !IsCanonical(v.Read(VmcsField.HostIdtrBase)) ||
            !IsCanonical(v.Read(VmcsField.HostTrBase)))
            return VmEntryCheck.HostBaseNotCanonical;

        // §27.2.4
        if (env.HostInIa32eMode ? !host64 : host64 || (entry & VmEntryControls.Ia32eModeGuest) != 0)
            return VmEntryCheck.HostAddressSpaceSizeInvalid;
        ulong rip = v.Read(VmcsField.HostRip);
        if (host64)
        {
            if ((cr4 & VmcsBuilder.Cr4Pae) == 0 || !IsCanonical(rip))
                return VmEntryCheck.Host64BitStateInvalid;
        }
        else if ((cr4 & Cr4Pcide) != 0 || rip >> 32 != 0)
        {
            return VmEntryCheck.Host32BitStateInvalid;
        }
        return VmEntryCheck.None;
    }

    // ---------------------------------------------------------------- §27.3.1 guest state

    private (VmEntryCheck, EntryFailureQualification) CheckGuestState(Vmcs v, in VmEntryEnvironment env)
    {
        var check = CheckGuestRegisters(v, env);
        if (check != VmEntryCheck.None)
            return (check, EntryFailureQualification.Default);
        return CheckGuestNonRegisterState(v, env);
    }

    private VmEntryCheck CheckGuestRegisters(Vmcs v, in VmEntryEnvironment env)
    {
        var entry = (VmEntryControls)v.Read(VmcsField.VmEntryControls);
        var secondary = Secondary(v);
        bool unrestricted = (secondary & SecondaryProcessorBasedControls.UnrestrictedGuest) != 0;
        bool ia32e = (entry & VmEntryControls.Ia32eModeGuest) != 0;

        // §27.3.1.1 control registers, debug registers, MSRs
        ulong cr0 = v.Read(VmcsField.GuestCr0), cr4 = v.Read(VmcsField.GuestCr4);
        ulong fixed0 = _caps.Cr0Fixed0;
        if (unrestricted)
            fixed0 &= ~(VmcsBuilder.Cr0Pe | VmcsBuilder.Cr0Pg);
        if ((cr0 & fixed0) != fixed0 || (cr0 & ~(_caps.Cr0Fixed1 | (unrestricted ? VmcsBuilder.Cr0Pe | VmcsBuilder.Cr0Pg : 0))) != 0)
            return VmEntryCheck.GuestCr0Invalid;
        if ((cr0 & VmcsBuilder.Cr0Pg) != 0 && (cr0 & VmcsBuilder.Cr0Pe) == 0)
            return VmEntryCheck.GuestCr0Invalid;
        if ((cr4 & _caps.Cr4Fixed0) != _caps.Cr4Fixed0 || (cr4 & ~_caps.Cr4Fixed1) != 0)
            return VmEntryCheck.GuestCr4Invalid;
        if ((entry & VmEntryControls.LoadDebugControls) != 0 &&
            ((v.Read(VmcsField.GuestIa32Debugctl) & DebugctlReservedBits) != 0 || v.Read(VmcsField.GuestDr7) >> 32 != 0))
            return VmEntryCheck.GuestDebugControlsInvalid;
        if (ia32e ? (cr0 & VmcsBuilder.Cr0Pg) == 0 || (cr4 & VmcsBuilder.Cr4Pae) == 0 : (cr4 & Cr4Pcide) != 0)
            return VmEntryCheck.GuestIa32eModeInconsistent;
        if (!env.IsValidPhysicalAddress(v.Read(VmcsField.GuestCr3)))
            return VmEntryCheck.GuestCr3Invalid;
        if (!IsCanonical(v.Read(VmcsField.GuestIa32SysenterEsp)) || !IsCanonical(v.Read(VmcsField.GuestIa32SysenterEip)))
            return VmEntryCheck.GuestSysenterNotCanonical;
        if ((entry & VmEntryControls.LoadIa32Pat) != 0 && !IsValidPat(v.Read(VmcsField.GuestIa32Pat)))
            return VmEntryCheck.GuestPatInvalid;
        if ((entry & VmEntryControls.LoadIa32Efer) != 0)
        {
            ulong efer = v.Read(VmcsField.GuestIa32Efer);
            bool lma = (efer & VmcsBuilder.EferLma) != 0, lme = (efer & VmcsBuilder.EferLme) != 0;
            if ((efer & ~EferAllowedBits) != 0 || lma != ia32e || ((cr0 & VmcsBuilder.Cr0Pg) != 0 && lma != lme))
                return VmEntryCheck.GuestEferInvalid;
        }

        // §27.3.1.2 segment registers
        ulong rflags = v.Read(VmcsField.GuestRflags);
        bool v86 = (rflags & RflagsVm) != 0;
        var seg = CheckGuestSegments(v, unrestricted, ia32e, v86, (cr0 & VmcsBuilder.Cr0Pe) != 0);
        if (seg != VmEntryCheck.None)
            return seg;

        // §27.3.1.3 GDTR and IDTR
        if (!IsCanonical(v.Read(VmcsField.GuestGdtrBase)) || !IsCanonical(v.Read(VmcsField.GuestIdtrBase)) ||
            (v.Read(VmcsField.GuestGdtrLimit) >> 16) != 0 || (v.Read(VmcsField.GuestIdtrLimit) >> 16) != 0)
            return VmEntryCheck.GuestDescriptorTableInvalid;

        // §27.3.1.4 RIP and RFLAGS
        var cs = new SegmentAccessRights((uint)v.Read(VmcsField.GuestCsAccessRights));
        ulong rip = v.Read(VmcsField.GuestRip);
        if (ia32e && cs.Long ? !IsCanonical(rip) : rip >> 32 != 0)
            return VmEntryCheck.GuestRipInvalid;
        if ((rflags & RflagsReservedMask) != 0 || (rflags & 2) == 0)
            return VmEntryCheck.GuestRflagsReservedBits;
        if (v86 && (ia32e || (cr0 & VmcsBuilder.Cr0Pe) == 0))
            return VmEntryCheck.GuestRflagsVmInvalid;
        var injection = new InterruptionInformation((uint)v.Read(VmcsField.VmEntryInterruptionInformation));
        if (injection.IsValid && injection.Type == InterruptionType.ExternalInterrupt && (rflags & RflagsIf) == 0)
            return VmEntryCheck.GuestRflagsIfForInterruptInjection;
        return VmEntryCheck.None;
    }

    private static VmEntryCheck CheckGuestSegments(Vmcs v, bool unrestricted, bool ia32e, bool v86, bool protectedMode)
    {
        // Order of registers in the VMCS: ES, CS, SS, DS, FS, GS (encodings step by 2).
        var tr = new SegmentAccessRights((uint)v.Read(VmcsField.GuestTrAccessRights));
        var ldtr = new SegmentAccessRights((uint)v.Read(VmcsField.GuestLdtrAccessRights));
        ulong csSel = v.Read(VmcsField.GuestCsSelector), ssSel = v.Read(VmcsField.GuestSsSelector);
        var cs = new SegmentAccessRights((uint)v.Read(VmcsField.GuestCsAccessRights));
        var ss = new SegmentAccessRights((uint)v.Read(VmcsField.GuestSsAccessRights));

        // Selectors.
        if ((v.Read(VmcsField.GuestTrSelector) & 4) != 0 || (!ldtr.IsUnusable && (v.Read(VmcsField.GuestLdtrSelector) & 4) != 0))
            return VmEntryCheck.GuestSelectorTi;
        if (!v86 && !unrestricted && (ssSel & 3) != (csSel & 3))
            return VmEntryCheck.GuestSsRplNotCsRpl;

        if (v86)
        {
            for (int i = 0; i < 6; i++)
            {
                ulong sel = v.Read(VmcsField.GuestEsSelector + (uint)(2 * i));
                if (v.Read(VmcsField.GuestEsBase + (uint)(2 * i)) != sel << 4)
                    return VmEntryCheck.GuestSegmentBaseInvalid;
            }
            for (int i = 0; i < 6; i++)
                if (v.Read(VmcsField.GuestEsLimit + (uint)(2 * i)) != 0xFFFF)
                    return VmEntryCheck.GuestV86LimitInvalid;
            for (int i = 0; i < 6; i++)
                if (v.Read(VmcsField.GuestEsAccessRights + (uint)(2 * i)) != 0xF3)
                    return VmEntryCheck.GuestV86AccessRightsInvalid;
        }
        else
        {
            // Bases: TR, FS, GS canonical; LDTR canonical if usable; CS, and SS/DS/ES if usable, bits 63:32 zero.
            if (!IsCanonical(v.Read(VmcsField.GuestTrBase)) || !IsCanonical(v.Read(VmcsField.GuestFsBase)) || !IsCanonical(v.Read(VmcsField.GuestGsBase)) ||
                (!ldtr.IsUnusable && !IsCanonical(v.Read(VmcsField.GuestLdtrBase))) || v.Read(VmcsField.GuestCsBase) >> 32 != 0)
                return VmEntryCheck.GuestSegmentBaseInvalid;
            foreach (var (ar, b) in (ReadOnlySpan<(VmcsField, VmcsField)>)[(VmcsField.GuestSsAccessRights, VmcsField.GuestSsBase),
                         (VmcsField.GuestDsAccessRights, VmcsField.GuestDsBase), (VmcsField.GuestEsAccessRights, VmcsField.GuestEsBase)])
                if (!new SegmentAccessRights((uint)v.Read(ar)).IsUnusable && v.Read(b) >> 32 != 0)
                    return VmEntryCheck.GuestSegmentBaseInvalid;

            // Types.
            bool csTypeOk = cs.Type is 9 or 11 or 13 or 15 || (unrestricted && cs.Type == 3);
            if (!csTypeOk)
                return VmEntryCheck.GuestSegmentTypeInvalid;
            if (!ss.IsUnusable && ss.Type is not (3 or 7))
                return VmEntryCheck.GuestSegmentTypeInvalid;
            foreach (var f in DataSegmentAccessRights)
            {
                var ar = new SegmentAccessRights((uint)v.Read(f));
                if (!ar.IsUnusable && ((ar.Type & 1) == 0 || ((ar.Type & 8) != 0 && (ar.Type & 2) == 0)))
                    return VmEntryCheck.GuestSegmentTypeInvalid;
            }
            // S bit.
            if (!cs.IsCodeOrData || (!ss.IsUnusable && !ss.IsCodeOrData))
                return VmEntryCheck.GuestSegmentNotCodeOrData;
            foreach (var f in DataSegmentAccessRights)
            {
                var ar = new SegmentAccessRights((uint)v.Read(f));
                if (!ar.IsUnusable && !ar.IsCodeOrData)
                    return VmEntryCheck.GuestSegmentNotCodeOrData;
            }
            // DPL.
            if (cs.Type == 3 && cs.Dpl != 0)
                return VmEntryCheck.GuestSegmentDplInvalid;
            if (cs.Type is 9 or 11 && cs.Dpl != ss.Dpl)
                return VmEntryCheck.GuestSegmentDplInvalid;
            if (cs.Type is 13 or 15 && cs.Dpl > ss.Dpl)
                return VmEntryCheck.GuestSegmentDplInvalid;
            if (!unrestricted && ss.Dpl != (int)(ssSel & 3))
                return VmEntryCheck.GuestSegmentDplInvalid;
            if ((cs.Type == 3 || !protectedMode) && ss.Dpl != 0)
                return VmEntryCheck.GuestSegmentDplInvalid;
            if (!unrestricted)
            {
                for (int i = 0; i < 6; i++)
                {
                    if (i is 1 or 2)
                        continue;
                    var ar = new SegmentAccessRights((uint)v.Read(VmcsField.GuestEsAccessRights + (uint)(2 * i)));
                    if (!ar.IsUnusable && ar.Type <= 11 && ar.Dpl < (int)(v.Read(VmcsField.GuestEsSelector + (uint)(2 * i)) & 3))
                        return VmEntryCheck.GuestSegmentDplInvalid;
                }
            }
            // Present, reserved bits, limit/granularity for CS and usable others.
            for (int i = 0; i < 6; i++)
            {
                var ar = new SegmentAccessRights((uint)v.Read(VmcsField.GuestEsAccessRights + (uint)(2 * i)));
                if (i != 1 && ar.IsUnusable)
                    continue;
                if (!ar.Present)
                    return VmEntryCheck.GuestSegmentNotPresent;
            }
            for (int i = 0; i < 6; i++)
            {
                var ar = new SegmentAccessRights((uint)v.Read(VmcsField.GuestEsAccessRights + (uint)(2 * i)));
                if (i != 1 && ar.IsUnusable)
                    continue;
                if (ar.HasReservedBits)
                    return VmEntryCheck.GuestSegmentReservedBits;
            }
            for (int i = 0; i < 6; i++)
            {
                var ar = new SegmentAccessRights((uint)v.Read(VmcsField.GuestEsAccessRights + (uint)(2 * i)));
                if (i != 1 && ar.IsUnusable)
                    continue;
                if (!LimitMatchesGranularity((uint)v.Read(VmcsField.GuestEsLimit + (uint)(2 * i)), ar))
                    return VmEntryCheck.GuestSegmentLimitGranularity;
            }
            if (ia32e && cs.Long && cs.DefaultBig)
                return VmEntryCheck.GuestCsLongAndDefaultBig;
        }

        // TR (§27.3.1.2): busy 32/64-bit TSS (or busy 16-bit TSS outside IA-32e mode), system, present, usable.
        if (!(tr.Type == 11 || (!ia32e && tr.Type == 3)) || tr.IsCodeOrData || !tr.Present || tr.HasReservedBits ||
            !LimitMatchesGranularity((uint)v.Read(VmcsField.GuestTrLimit), tr) || tr.IsUnusable)
            return VmEntryCheck.GuestTrInvalid;
        // LDTR if usable: LDT, system, present.
        if (!ldtr.IsUnusable && (ldtr.Type != 2 || ldtr.IsCodeOrData || !ldtr.Present || ldtr.HasReservedBits ||
            !LimitMatchesGranularity((uint)v.Read(VmcsField.GuestLdtrLimit), ldtr)))
            return VmEntryCheck.GuestLdtrInvalid;
        return VmEntryCheck.None;
    }

    private (VmEntryCheck, EntryFailureQualification) CheckGuestNonRegisterState(Vmcs v, in VmEntryEnvironment env)
    {
        const EntryFailureQualification none = EntryFailureQualification.Default;
        ulong rflags = v.Read(VmcsField.GuestRflags);
        uint activity = (uint)v.Read(VmcsField.GuestActivityState);
        uint interruptibility = (uint)v.Read(VmcsField.GuestInterruptibilityState);
        var ss = new SegmentAccessRights((uint)v.Read(VmcsField.GuestSsAccessRights));
        var injection = new InterruptionInformation((uint)v.Read(VmcsField.VmEntryInterruptionInformation));
        var pin = (PinBasedControls)v.Read(VmcsField.PinBasedVmExecutionControls);
        const uint blockingBySti = 1, blockingByMovSs = 2, blockingBySmi = 4, blockingByNmi = 8;

        // §27.3.1.5 activity state
        if (!_caps.Misc.SupportsActivityState(activity))
            return (VmEntryCheck.GuestActivityStateInvalid, none);
        if (activity == 1 && ss.Dpl != 0)
            return (VmEntryCheck.GuestActivityStateInvalid, none);
        if ((interruptibility & (blockingBySti | blockingByMovSs)) != 0 && activity != 0)
            return (VmEntryCheck.GuestActivityStateInvalid, none);

        // Interruptibility state.
        if ((interruptibility & ~0x1Fu) != 0 || (interruptibility & 0x10) != 0)
            return (VmEntryCheck.GuestInterruptibilityInvalid, none);
        if ((interruptibility & (blockingBySti | blockingByMovSs)) == (blockingBySti | blockingByMovSs))
            return (VmEntryCheck.GuestInterruptibilityInvalid, none);
        if ((rflags & RflagsIf) == 0 && (interruptibility & blockingBySti) != 0)
            return (VmEntryCheck.GuestInterruptibilityInvalid, none);
        if (injection.IsValid && injection.Type == InterruptionType.ExternalInterrupt && (interruptibility & (blockingBySti | blockingByMovSs)) != 0)
            return (VmEntryCheck.GuestInterruptibilityBlocksInjection, none);
        if (injection.IsValid && injection.Type == InterruptionType.Nmi && (interruptibility & blockingByMovSs) != 0)
            return (VmEntryCheck.GuestInterruptibilityBlocksInjection, none);
        if (!env.InSmm && (interruptibility & blockingBySmi) != 0)
            return (VmEntryCheck.GuestInterruptibilityInvalid, none);
        if (injection.IsValid && injection.Type == InterruptionType.Nmi && (pin & PinBasedControls.VirtualNmis) != 0 && (interruptibility & blockingByNmi) != 0)
            return (VmEntryCheck.GuestInterruptibilityBlocksInjection, none);

        // Pending debug exceptions: bits 11:4, 13, 15 and 63:17 reserved.
        ulong pending = v.Read(VmcsField.GuestPendingDebugExceptions);
        if ((pending & PendingDebugReservedMask) != 0)
            return (VmEntryCheck.GuestPendingDebugExceptionsInvalid, none);
        if ((interruptibility & (blockingBySti | blockingByMovSs)) != 0 || activity == 1)
        {
            bool tf = (rflags & RflagsTf) != 0;
            bool btf = (v.Read(VmcsField.GuestIa32Debugctl) & 2) != 0;
            bool bs = (pending & (1ul << 14)) != 0;
            if ((tf && !btf && !bs) || ((!tf || btf) && bs))
                return (VmEntryCheck.GuestPendingDebugExceptionsInvalid, none);
        }

        // VMCS link pointer.
        ulong link = v.Read(VmcsField.VmcsLinkPointer);
        if (link != ulong.MaxValue)
        {
            if ((link & 0xFFF) != 0 || !env.IsValidPhysicalAddress(link) || link == env.CurrentVmcsPointer ||
                (env.ReadPhysical32 is { } read && (read(link) & 0x7FFF_FFFF) != _caps.Basic.RevisionIdentifier))
                return (VmEntryCheck.GuestVmcsLinkPointerInvalid, EntryFailureQualification.InvalidVmcsLinkPointer);
        }

        // §27.3.1.6 PDPTEs with PAE paging and EPT.
        var entry = (VmEntryControls)v.Read(VmcsField.VmEntryControls);
        ulong cr0 = v.Read(VmcsField.GuestCr0), cr4 = v.Read(VmcsField.GuestCr4);
        if ((Secondary(v) & SecondaryProcessorBasedControls.EnableEpt) != 0 && (cr0 & VmcsBuilder.Cr0Pg) != 0 &&
            (cr4 & VmcsBuilder.Cr4Pae) != 0 && (entry & VmEntryControls.Ia32eModeGuest) == 0)
        {
            ulong reserved = PdpteReservedBits(env);
            for (int i = 0; i < 4; i++)
            {
                ulong pdpte = v.Read(VmcsField.GuestPdpte0 + (uint)(2 * i));
                if ((pdpte & 1) != 0 && (pdpte & reserved) != 0)
                    return (VmEntryCheck.GuestPdpteInvalid, EntryFailureQualification.PdpteLoading);
            }
        }
        return (VmEntryCheck.None, none);
    }

    // ---------------------------------------------------------------- helpers

    private const ulong Cr4Pcide = 1ul << 17;
    private const ulong RflagsTf = 1ul << 8;
    private const ulong RflagsIf = 1ul << 9;
    private const ulong RflagsVm = 1ul << 17;
    // RFLAGS bits 63:22, 15, 5 and 3 are reserved (SDM §27.3.1.4).
    private const ulong RflagsReservedMask = 0xFFFF_FFFF_FFC0_8028ul;
    // IA32_EFER bits that may be set: SCE, LME, LMA, NXE.
    private const ulong EferAllowedBits = 1ul | 1ul << 8 | 1ul << 10 | 1ul << 11;
    // IA32_DEBUGCTL: bits 5:2 and 63:16 reserved on the models we check against.
    private const ulong DebugctlReservedBits = 0xFFFF_FFFF_FFFF_0000ul | 0x3Cul;
    // Pending debug exceptions: bits 11:4, 13, 15, 63:17 reserved (bit 16 is RTM, allowed only with RTM support; treated as reserved).
    private const ulong PendingDebugReservedMask = 0xFFFF_FFFF_FFFF_AFF0ul;

    private static readonly VmcsField[] HostSelectors =
    [
        VmcsField.HostEsSelector, VmcsField.HostCsSelector, VmcsField.HostSsSelector, VmcsField.HostDsSelector,
        VmcsField.HostFsSelector, VmcsField.HostGsSelector, VmcsField.HostTrSelector,
    ];

    private static readonly VmcsField[] DataSegmentAccessRights =
    [
        VmcsField.GuestDsAccessRights, VmcsField.GuestEsAccessRights, VmcsField.GuestFsAccessRights, VmcsField.GuestGsAccessRights,
    ];

    private static SecondaryProcessorBasedControls Secondary(Vmcs v) =>
        ((PrimaryProcessorBasedControls)v.Read(VmcsField.PrimaryProcessorBasedVmExecutionControls) & PrimaryProcessorBasedControls.ActivateSecondaryControls) != 0
            ? (SecondaryProcessorBasedControls)v.Read(VmcsField.SecondaryProcessorBasedVmExecutionControls)
            : SecondaryProcessorBasedControls.None;

    private static bool PageAligned(ulong address, in VmEntryEnvironment env) => (address & 0xFFF) == 0 && env.IsValidPhysicalAddress(address);

    private static bool MsrArea(Vmcs v, VmcsField count, VmcsField address, in VmEntryEnvironment env)
    {
        ulong n = v.Read(count);
        if (n == 0)
            return true;
        ulong a = v.Read(address);
        return (a & 0xF) == 0 && env.IsValidPhysicalAddress(a) && env.IsValidPhysicalAddress(a + n * 16 - 1);
    }

    private bool IsValidEptPointer(ulong eptp, in VmEntryEnvironment env)
    {
        var cap = _caps.EptVpid;
        ulong memoryType = eptp & 7;
        if (!((memoryType == 0 && cap.UncacheableType) || (memoryType == 6 && cap.WriteBackType)))
            return false;
        ulong walk = (eptp >> 3) & 7;
        if (!((walk == 3 && cap.PageWalkLength4) || (walk == 4 && cap.PageWalkLength5)))
            return false;
        if ((eptp & (1ul << 6)) != 0 && !cap.AccessedDirtyFlags)
            return false;
        if ((eptp & 0xF80) != 0)
            return false;
        return env.IsValidPhysicalAddress(eptp);
    }

    /// <summary>True when <paramref name="address"/> is canonical for 48-bit linear addresses.</summary>
    public static bool IsCanonical(ulong address) => (ulong)((long)(address << 16) >> 16) == address;

    /// <summary>True when every byte of an IA32_PAT value is a valid memory type (0, 1, 4, 5, 6 or 7).</summary>
    public static bool IsValidPat(ulong pat)
    {
        for (int i = 0; i < 8; i++)
        {
            ulong t = (pat >> (8 * i)) & 0xFF;
            if (t is 2 or 3 or > 7)
                return false;
        }
        return true;
    }

    private static bool LimitMatchesGranularity(uint limit, SegmentAccessRights ar) =>
        ar.Granularity ? (limit & 0xFFF) == 0xFFF : (limit & 0xFFF0_0000) == 0;

    private static ulong PdpteReservedBits(in VmEntryEnvironment env)
    {
        // Bits 2:1, 8:5 and 63:MAXPHYADDR of a present PDPTE are reserved (SDM Vol. 3A §4.4.1).
        ulong high = env.PhysicalAddressWidth >= 64 ? 0 : ~0ul << env.PhysicalAddressWidth;
        return high | 0x1E6ul;
    }
}
