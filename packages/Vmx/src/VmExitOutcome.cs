namespace VmmKit.Vmx;

/// <summary>How a VMLAUNCH/VMRESUME ended (SDM Vol. 3C §27.1, §27.8, §31.2).</summary>
public enum VmExitOutcome
{
    /// <summary>The guest ran and a VM exit occurred.</summary>
    VmExit = 0,
    /// <summary>VM entry failed while loading guest state (exit reason 33/34/41 with bit 31 set); the processor is back in the host.</summary>
    EntryFailure = 1,
    /// <summary>VMfailValid: the instruction failed before entry, with an error number in the VM-instruction error field.</summary>
    VmFailValid = 2,
    /// <summary>VMfailInvalid: no current VMCS.</summary>
    VmFailInvalid = 3,
}
