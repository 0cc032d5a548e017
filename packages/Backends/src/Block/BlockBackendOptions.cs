using Microsoft.Extensions.Logging;

namespace VmmKit.Backends.Block;

/// <summary>What a <see cref="BlockBackend"/> advertises and allows.</summary>
public sealed class BlockBackendOptions
{
    /// <summary><c>max-ring-page-order</c>: the frontend may use up to 2^order ring pages (0: single-page rings only). Default 4.</summary>
    public int MaxRingPageOrder { get; init; } = 4;

    /// <summary><c>feature-max-indirect-segments</c>: segments of a <c>BLKIF_OP_INDIRECT</c> request (0: not advertised). Default 256.</summary>
    public int MaxIndirectSegments { get; init; } = 256;

    /// <summary>Local pages for grant copy (at least max(11, <see cref="MaxIndirectSegments"/>)); null moves data by grant mapping.</summary>
    public IBackendBuffer? CopyBuffer { get; init; }

    /// <summary>Where the backend logs connections and frontend errors (nothing by default).</summary>
    public ILogger? Logger { get; init; }

    /// <summary>The clock of the late unmask of spurious events (tests move it by hand).</summary>
    internal TimeProvider TimeProvider { get; init; } = TimeProvider.System;
}
