namespace VmmKit.Vmx;

/// <summary>
/// Exit qualification for debug exceptions (#DB exits) and the format of the pending-debug-exceptions field
/// (SDM Vol. 3C §28.2.1, Table 28-1; §25.4.2).
/// </summary>
/// <param name="Value">The raw exit qualification.</param>
public readonly record struct DebugExceptionQualification(ulong Value)
{
    /// <summary>Bits 3:0: B0–B3, which breakpoint conditions were met.</summary>
    public int BreakpointConditions => (int)(Value & 0xF);

    /// <summary>Bit 11: BLD, bus-lock detected.</summary>
    public bool BusLockDetected => (Value & (1ul << 11)) != 0;

    /// <summary>Bit 12 (pending debug exceptions only): an enabled breakpoint was hit.</summary>
    public bool EnabledBreakpoint => (Value & (1ul << 12)) != 0;

    /// <summary>Bit 13: BD, debug-register access detected.</summary>
    public bool DebugRegisterAccessDetected => (Value & (1ul << 13)) != 0;

    /// <summary>Bit 14: BS, single step.</summary>
    public bool SingleStep => (Value & (1ul << 14)) != 0;

    /// <summary>Bit 16: RTM region.</summary>
    public bool Rtm => (Value & (1ul << 16)) != 0;
}
