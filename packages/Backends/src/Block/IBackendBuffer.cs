namespace VmmKit.Backends.Block;

/// <summary>
/// Pages of the backend's own memory that grant copies target: <c>GNTTABOP_copy</c> names them by their frame in the
/// backend's space (<c>DOMID_SELF</c> + <c>gmfn</c>, xen/grant_table.h) while the backend reads and writes their bytes
/// directly. With one, blkback moves data by grant copy (one batched call per request) instead of mapping every page.
/// A buffer serves one ring at a time.
/// </summary>
public interface IBackendBuffer
{
    /// <summary>Number of pages (at least the segments of the largest request the backend accepts).</summary>
    int PageCount { get; }

    /// <summary>The frame of page <paramref name="index"/> as <c>GNTTABOP_copy</c> names it (<c>gnttab_copy_ptr.u.gmfn</c>).</summary>
    /// <param name="index">The page.</param>
    /// <returns>Its frame number.</returns>
    ulong Frame(int index);

    /// <summary>The bytes of page <paramref name="index"/>.</summary>
    /// <param name="index">The page.</param>
    /// <returns>The 4 KiB page.</returns>
    Span<byte> Page(int index);
}
