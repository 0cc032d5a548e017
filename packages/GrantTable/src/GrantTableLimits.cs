namespace VmmKit.GrantTable;

/// <summary>
/// Per-domain grant-table resource limits (Xen's <c>max_grant_frames</c> and <c>max_maptrack_frames</c>,
/// set per domain by the toolstack; defaults from Xen's <c>gnttab_max_frames</c>=64 and
/// <c>gnttab_max_maptrack_frames</c>=1024).
/// </summary>
/// <param name="MaxGrantFrames">Most shared grant-table frames the domain may have (1 to 1024).</param>
/// <param name="MaxMaptrackFrames">Most maptrack frames (256 mappings each) the domain may use (0 to 1024; 0: cannot map grants).</param>
public readonly record struct GrantTableLimits(int MaxGrantFrames, int MaxMaptrackFrames)
{
    /// <summary>Xen's defaults: 64 grant frames, 1024 maptrack frames.</summary>
    public static GrantTableLimits Default => new(64, 1024);

    /// <summary>Mappings per maptrack frame (<c>MAPTRACK_PER_PAGE</c>: 4096 / sizeof(struct grant_mapping)).</summary>
    public const int MaptrackPerFrame = 256;
}
