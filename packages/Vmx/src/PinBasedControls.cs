namespace VmmKit.Vmx;

/// <summary>Pin-based VM-execution controls (VMCS field 0x4000; SDM Vol. 3C §25.6.1, Table 25-5).</summary>
[Flags]
public enum PinBasedControls : uint
{
    /// <summary>No control set.</summary>
    None = 0,
    /// <summary>Bit 0: external interrupts cause VM exits.</summary>
    ExternalInterruptExiting = 1u << 0,
    /// <summary>Bit 3: non-maskable interrupts cause VM exits.</summary>
    NmiExiting = 1u << 3,
    /// <summary>Bit 5: NMIs are never blocked and the "blocking by NMI" bit tracks virtual-NMI blocking.</summary>
    VirtualNmis = 1u << 5,
    /// <summary>Bit 6: the VMX-preemption timer counts down in VMX non-root operation.</summary>
    ActivateVmxPreemptionTimer = 1u << 6,
    /// <summary>Bit 7: interrupts with the posted-interrupt notification vector are processed specially.</summary>
    ProcessPostedInterrupts = 1u << 7,
}
