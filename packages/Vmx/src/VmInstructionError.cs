namespace VmmKit.Vmx;

/// <summary>VM-instruction error numbers stored in the VM-instruction error field on VMfailValid (SDM Vol. 3C §31.4, Table 31-1).</summary>
public enum VmInstructionError : uint
{
    /// <summary>No error (the instruction did not VMfailValid).</summary>
    None = 0,
    /// <summary>VMCALL executed in VMX root operation.</summary>
    VmcallInVmxRootOperation = 1,
    /// <summary>VMCLEAR with invalid physical address.</summary>
    VmclearWithInvalidPhysicalAddress = 2,
    /// <summary>VMCLEAR with VMXON pointer.</summary>
    VmclearWithVmxonPointer = 3,
    /// <summary>VMLAUNCH with non-clear VMCS.</summary>
    VmlaunchWithNonClearVmcs = 4,
    /// <summary>VMRESUME with non-launched VMCS.</summary>
    VmresumeWithNonLaunchedVmcs = 5,
    /// <summary>VMRESUME after VMXOFF.</summary>
    VmresumeAfterVmxoff = 6,
    /// <summary>VM entry with invalid control field(s).</summary>
    VmEntryWithInvalidControlFields = 7,
    /// <summary>VM entry with invalid host-state field(s).</summary>
    VmEntryWithInvalidHostStateFields = 8,
    /// <summary>VMPTRLD with invalid physical address.</summary>
    VmptrldWithInvalidPhysicalAddress = 9,
    /// <summary>VMPTRLD with VMXON pointer.</summary>
    VmptrldWithVmxonPointer = 10,
    /// <summary>VMPTRLD with incorrect VMCS revision identifier.</summary>
    VmptrldWithIncorrectRevisionIdentifier = 11,
    /// <summary>VMREAD/VMWRITE from/to unsupported VMCS component.</summary>
    UnsupportedVmcsComponent = 12,
    /// <summary>VMWRITE to read-only VMCS component.</summary>
    VmwriteToReadOnlyComponent = 13,
    /// <summary>VMXON executed in VMX root operation.</summary>
    VmxonInVmxRootOperation = 15,
    /// <summary>VM entry with invalid executive-VMCS pointer.</summary>
    VmEntryWithInvalidExecutiveVmcsPointer = 16,
    /// <summary>VM entry with non-launched executive VMCS.</summary>
    VmEntryWithNonLaunchedExecutiveVmcs = 17,
    /// <summary>VM entry with executive-VMCS pointer not VMXON pointer.</summary>
    VmEntryWithExecutiveVmcsPointerNotVmxonPointer = 18,
    /// <summary>VMCALL with non-clear VMCS.</summary>
    VmcallWithNonClearVmcs = 19,
    /// <summary>VMCALL with invalid VM-exit control fields.</summary>
    VmcallWithInvalidVmExitControlFields = 20,
    /// <summary>VMCALL with incorrect MSEG revision identifier.</summary>
    VmcallWithIncorrectMsegRevisionIdentifier = 22,
    /// <summary>VMXOFF under dual-monitor treatment of SMIs and SMM.</summary>
    VmxoffUnderDualMonitorTreatment = 23,
    /// <summary>VMCALL with invalid SMM-monitor features.</summary>
    VmcallWithInvalidSmmMonitorFeatures = 24,
    /// <summary>VM entry with invalid VM-execution control fields in executive VMCS.</summary>
    VmEntryWithInvalidExecutionControlsInExecutiveVmcs = 25,
    /// <summary>VM entry with events blocked by MOV SS.</summary>
    VmEntryWithEventsBlockedByMovSs = 26,
    /// <summary>Invalid operand to INVEPT/INVVPID.</summary>
    InvalidOperandToInveptInvvpid = 28,
}
