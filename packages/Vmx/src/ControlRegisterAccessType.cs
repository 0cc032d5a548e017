namespace VmmKit.Vmx;

/// <summary>Bits 5:4 of the control-register-access exit qualification (SDM Vol. 3C §28.2.1, Table 28-3).</summary>
public enum ControlRegisterAccessType
{
    /// <summary>MOV to CR.</summary>
    MovToCr = 0,
    /// <summary>MOV from CR.</summary>
    MovFromCr = 1,
    /// <summary>CLTS.</summary>
    Clts = 2,
    /// <summary>LMSW.</summary>
    Lmsw = 3,
}
