namespace VmmKit.Vmx;

/// <summary>The type of a VMCS field, encoded in bits 11:10 of its encoding (SDM Vol. 3C §25.11.2, Table 25-21).</summary>
public enum VmcsFieldType
{
    /// <summary>VM-execution, VM-exit and VM-entry control fields.</summary>
    Control = 0,
    /// <summary>Read-only VM-exit information fields ("VM-exit information" / read-only data).</summary>
    VmExitInformation = 1,
    /// <summary>Guest-state area.</summary>
    GuestState = 2,
    /// <summary>Host-state area.</summary>
    HostState = 3,
}
