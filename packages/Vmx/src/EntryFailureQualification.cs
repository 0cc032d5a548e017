namespace VmmKit.Vmx;

/// <summary>The exit qualification of a VM-entry failure due to invalid guest state, exit reason 33 (SDM Vol. 3C §27.8).</summary>
public enum EntryFailureQualification : ulong
{
    /// <summary>Default (a check of §27.3.1 failed).</summary>
    Default = 0,
    /// <summary>Not used.</summary>
    NotUsed = 1,
    /// <summary>Failure was due to a problem loading the PDPTEs (§27.3.1.6).</summary>
    PdpteLoading = 2,
    /// <summary>Failure was due to an attempt to inject a non-maskable interrupt into a guest that is blocking events through the STI blocking bit.</summary>
    NmiInjection = 3,
    /// <summary>Failure was due to an invalid VMCS link pointer.</summary>
    InvalidVmcsLinkPointer = 4,
}
