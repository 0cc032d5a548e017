namespace VmmKit.GrantTable;

/// <summary>
/// Per-domain grant-table limits (Xen's <c>max_grant_frames</c>, <c>max_maptrack_frames</c> and, since Xen 4.16,
/// <c>max_grant_version</c>, set per domain by the toolstack at <c>XEN_DOMCTL_createdomain</c>; defaults from Xen's
/// <c>gnttab_max_frames</c>=64, <c>gnttab_max_maptrack_frames</c>=1024 and x86's <c>gnttab=max-ver:2</c>). A host's
/// own limits (<see cref="GrantTableHost.HostLimits"/>) are both the defaults and the ceilings of its domains', as in
/// Xen 4.17's <c>grant_table_init</c>.
/// </summary>
/// <param name="MaxGrantFrames">Most shared grant-table frames the domain may have (1 to 1024).</param>
/// <param name="MaxMaptrackFrames">Most maptrack frames (256 mappings each) the domain may use (0 to 1024; 0: cannot map grants).</param>
public readonly record struct GrantTableLimits(int MaxGrantFrames, int MaxMaptrackFrames)
{
    /// <summary>Xen's defaults: 64 grant frames, 1024 maptrack frames, version 2 allowed.</summary>
    public static GrantTableLimits Default => new(64, 1024);

    /// <summary>Mappings per maptrack frame (<c>MAPTRACK_PER_PAGE</c>: 4096 / sizeof(struct grant_mapping)).</summary>
    public const int MaptrackPerFrame = 256;

    /// <summary>The highest grant-table version this package implements (Xen's <c>GNTTAB_MAX_VERSION</c> on x86).</summary>
    public const int HighestVersion = 2;

    /// <summary>
    /// The highest grant-table version the domain may switch to with <c>GNTTABOP_set_version</c> (Xen's
    /// <c>gt-&gt;max_version</c>, from <c>XEN_DOMCTL_GRANT_version(grant_opts)</c>): 1 or 2, 2 unless set. A domain
    /// limited to 1 gets -ENOSYS when it asks for version 2, as before Xen had set_version.
    /// </summary>
    public int MaxVersion { get; init; } = HighestVersion;
}
