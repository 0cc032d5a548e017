namespace VmmKit.GrantTable;

/// <summary>
/// One mapping a domain holds of another domain's grant (Xen's <c>struct grant_mapping</c>); its index is the
/// handle returned by map. Free entries are chained through <see cref="NextFree"/>.
/// </summary>
internal struct MaptrackEntry
{
    public uint Ref;
    public GrantMapFlags Flags;
    public GrantDomain? Granter;
    public ulong Gfn;
    public ulong Mfn;
    public int NextFree;
}
