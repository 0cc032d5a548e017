namespace VmmKit.Backends.Rings;

/// <summary>
/// The layout rules of xen/io/ring.h's <c>DEFINE_RING_TYPES</c> shared ring: a 64-byte header (<c>req_prod</c>,
/// <c>req_event</c>, <c>rsp_prod</c>, <c>rsp_event</c>, then padding) followed by a power-of-two array of request/response
/// unions, spread over one or more pages.
/// </summary>
public static class SharedRing
{
    /// <summary>Offset of <c>req_prod</c>.</summary>
    public const int ReqProdOffset = 0;

    /// <summary>Offset of <c>req_event</c>.</summary>
    public const int ReqEventOffset = 4;

    /// <summary>Offset of <c>rsp_prod</c>.</summary>
    public const int RspProdOffset = 8;

    /// <summary>Offset of <c>rsp_event</c>.</summary>
    public const int RspEventOffset = 12;

    /// <summary>Offset of <c>ring[0]</c> (<c>offsetof(struct blkif_sring, ring)</c>).</summary>
    public const int EntriesOffset = 64;

    /// <summary>A ring page.</summary>
    public const int PageSize = 4096;

    /// <summary><c>__CONST_RING_SIZE</c>: entries of <paramref name="entrySize"/> bytes that fit in <paramref name="pages"/> pages, rounded down to a power of two.</summary>
    /// <param name="pages">Pages of the ring (1 &lt;&lt; ring-page-order).</param>
    /// <param name="entrySize">Size of the request/response union.</param>
    /// <returns>The ring size.</returns>
    public static uint Size(int pages, int entrySize)
    {
        uint n = (uint)((pages * PageSize - EntriesOffset) / entrySize);
        return n == 0 ? 0 : 1u << System.Numerics.BitOperations.Log2(n);
    }
}
