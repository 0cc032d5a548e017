namespace VmmKit.Ept;

/// <summary>
/// EPT access rights (SDM Vol. 3C §29.3.2, tables 29-1..29-6) and, as a request, the kind of access being made.
/// As rights, the values are the entry bits: Read = bit 0, Write = bit 1, Execute = bit 2 (supervisor-mode
/// execute when mode-based execute control is on); <see cref="UserExecute"/> stands for bit 10.
/// </summary>
[Flags]
public enum EptAccess : byte
{
    /// <summary>No access.</summary>
    None = 0,

    /// <summary>Data read (entry bit 0).</summary>
    Read = 1,

    /// <summary>Data write (entry bit 1).</summary>
    Write = 2,

    /// <summary>Instruction fetch; with mode-based execute control, a supervisor-mode fetch (entry bit 2).</summary>
    Execute = 4,

    /// <summary>User-mode instruction fetch under mode-based execute control (entry bit 10).</summary>
    UserExecute = 8,

    /// <summary>Read, write and execute.</summary>
    ReadWriteExecute = Read | Write | Execute,

    /// <summary>Every right, including user-mode execute.</summary>
    All = Read | Write | Execute | UserExecute,
}
