namespace VmmKit.Ept;

/// <summary>The kind of a linear-address access, for the access-rights rules of guest paging (SDM Vol. 3A §4.6).</summary>
public enum GuestPagingAccess
{
    /// <summary>Data read.</summary>
    Read = 1,

    /// <summary>Data write.</summary>
    Write = 2,

    /// <summary>Instruction fetch.</summary>
    Execute = 4,
}
