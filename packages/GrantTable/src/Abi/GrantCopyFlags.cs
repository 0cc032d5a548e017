namespace VmmKit.GrantTable;

/// <summary>Flags of <see cref="GnttabCopy.Flags"/> (<c>GNTCOPY_*</c>, xen/grant_table.h).</summary>
[Flags]
public enum GrantCopyFlags : ushort
{
    /// <summary>Both sides are frames of the caller (<c>DOMID_SELF</c>).</summary>
    None = 0,
    /// <summary><c>GNTCOPY_source_gref</c>: the source is a grant reference, not a frame number.</summary>
    SourceGref = 1 << 0,
    /// <summary><c>GNTCOPY_dest_gref</c>: the destination is a grant reference, not a frame number.</summary>
    DestGref = 1 << 1,
}
