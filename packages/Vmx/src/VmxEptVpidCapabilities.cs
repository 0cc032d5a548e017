namespace VmmKit.Vmx;

/// <summary>IA32_VMX_EPT_VPID_CAP (MSR 0x48C; SDM Vol. 3D Appendix A.10).</summary>
/// <param name="Value">The MSR value.</param>
public readonly record struct VmxEptVpidCapabilities(ulong Value)
{
    /// <summary>Bit 0: execute-only EPT translations are supported.</summary>
    public bool ExecuteOnly => (Value & 1) != 0;

    /// <summary>Bit 6: a page-walk length of 4 is supported.</summary>
    public bool PageWalkLength4 => (Value & (1ul << 6)) != 0;

    /// <summary>Bit 7: a page-walk length of 5 is supported.</summary>
    public bool PageWalkLength5 => (Value & (1ul << 7)) != 0;

    /// <summary>Bit 8: the EPT paging structures may be uncacheable (EPTP memory type 0).</summary>
    public bool UncacheableType => (Value & (1ul << 8)) != 0;

    /// <summary>Bit 14: the EPT paging structures may be write-back (EPTP memory type 6).</summary>
    public bool WriteBackType => (Value & (1ul << 14)) != 0;

    /// <summary>Bit 16: 2-MByte EPT pages are supported.</summary>
    public bool Pages2M => (Value & (1ul << 16)) != 0;

    /// <summary>Bit 17: 1-GByte EPT pages are supported.</summary>
    public bool Pages1G => (Value & (1ul << 17)) != 0;

    /// <summary>Bit 20: INVEPT is supported.</summary>
    public bool Invept => (Value & (1ul << 20)) != 0;

    /// <summary>Bit 21: accessed and dirty flags for EPT are supported.</summary>
    public bool AccessedDirtyFlags => (Value & (1ul << 21)) != 0;

    /// <summary>Bit 22: EPT violations report advanced information.</summary>
    public bool AdvancedVmExitInformation => (Value & (1ul << 22)) != 0;

    /// <summary>Bit 23: supervisor shadow-stack control is supported.</summary>
    public bool SupervisorShadowStack => (Value & (1ul << 23)) != 0;

    /// <summary>Bit 25: single-context INVEPT is supported.</summary>
    public bool InveptSingleContext => (Value & (1ul << 25)) != 0;

    /// <summary>Bit 26: all-context INVEPT is supported.</summary>
    public bool InveptAllContexts => (Value & (1ul << 26)) != 0;

    /// <summary>Bit 32: INVVPID is supported.</summary>
    public bool Invvpid => (Value & (1ul << 32)) != 0;

    /// <summary>Bit 40: individual-address INVVPID is supported.</summary>
    public bool InvvpidIndividualAddress => (Value & (1ul << 40)) != 0;

    /// <summary>Bit 41: single-context INVVPID is supported.</summary>
    public bool InvvpidSingleContext => (Value & (1ul << 41)) != 0;

    /// <summary>Bit 42: all-context INVVPID is supported.</summary>
    public bool InvvpidAllContexts => (Value & (1ul << 42)) != 0;

    /// <summary>Bit 43: single-context-retaining-globals INVVPID is supported.</summary>
    public bool InvvpidSingleContextRetainingGlobals => (Value & (1ul << 43)) != 0;
}
