namespace VmmKit.Vmx;

/// <summary>The INVEPT type operand (SDM Vol. 3C §29.4.3.1; Vol. 2 "INVEPT").</summary>
public enum InveptType
{
    /// <summary>Invalidate mappings associated with one EPTP.</summary>
    SingleContext = 1,
    /// <summary>Invalidate mappings associated with all EPTPs.</summary>
    AllContexts = 2,
}
