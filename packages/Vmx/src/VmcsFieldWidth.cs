namespace VmmKit.Vmx;

/// <summary>The width of a VMCS field, encoded in bits 14:13 of its encoding (SDM Vol. 3C §25.11.2, Table 25-21).</summary>
public enum VmcsFieldWidth
{
    /// <summary>16-bit field.</summary>
    Word = 0,
    /// <summary>64-bit field (its high 32 bits are also reachable through the encoding with bit 0 set).</summary>
    Quadword = 1,
    /// <summary>32-bit field.</summary>
    Doubleword = 2,
    /// <summary>Natural-width field: 64 bits on processors supporting Intel 64, 32 bits otherwise.</summary>
    Natural = 3,
}
