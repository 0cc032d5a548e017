using System.Runtime.InteropServices;
using VmmKit.GrantTable;

namespace VmmKit.Backends.Rings;

/// <summary>
/// One or more granted pages mapped through an <see cref="IGrantMapper"/> and seen as one logical buffer, as a
/// multi-page shared ring is (<c>ring-ref0..N</c>, xen/io/blkif.h "ring-page-order"): reads and writes may cross a page
/// boundary. The frontend shares these pages and may change them at any time; callers copy what they check.
/// </summary>
public sealed class GrantedPages : IDisposable
{
    private readonly IGrantMapper _mapper;
    private readonly GrantMapping[] _maps;
    private int _mapped;

    private GrantedPages(IGrantMapper mapper, int count)
    {
        _mapper = mapper;
        _maps = new GrantMapping[count];
    }

    /// <summary>Number of pages.</summary>
    public int Count => _maps.Length;

    /// <summary>Size in bytes.</summary>
    public int Length => _maps.Length * SharedRing.PageSize;

    /// <summary>Maps every grant of <paramref name="refs"/>; on the first failure unmaps what was mapped and returns that status.</summary>
    /// <param name="mapper">The mapper.</param>
    /// <param name="domainId">The granting (frontend) domain.</param>
    /// <param name="refs">The grant references, in ring order.</param>
    /// <param name="readOnly">Map read-only.</param>
    /// <param name="pages">The pages on success.</param>
    /// <returns><see cref="GrantStatus.Okay"/> or the hypervisor's status.</returns>
    public static GrantStatus TryMap(IGrantMapper mapper, ushort domainId, ReadOnlySpan<uint> refs, bool readOnly, out GrantedPages? pages)
    {
        ArgumentNullException.ThrowIfNull(mapper);
        var p = new GrantedPages(mapper, refs.Length);
        for (int i = 0; i < refs.Length; i++)
        {
            GrantStatus s = mapper.TryMap(domainId, refs[i], readOnly, out p._maps[i]);
            if (s != GrantStatus.Okay)
            {
                p.Dispose();
                pages = null;
                return s;
            }

            p._mapped++;
        }

        pages = p;
        return GrantStatus.Okay;
    }

    /// <summary>The bytes of page <paramref name="index"/>, to read and write.</summary>
    /// <param name="index">The page.</param>
    /// <returns>The page.</returns>
    /// <exception cref="InvalidOperationException">The pages were mapped read-only: use <see cref="ReadOnlyPage"/>.</exception>
    public Span<byte> Page(int index) => _mapper.GetPage(_maps[index]);

    /// <summary>The bytes of page <paramref name="index"/>, to read (read-only or writable pages).</summary>
    /// <param name="index">The page.</param>
    /// <returns>The page.</returns>
    public ReadOnlySpan<byte> ReadOnlyPage(int index) => _mapper.GetReadOnlyPage(_maps[index]);

    /// <summary>A 32-bit ring index at <paramref name="offset"/> of the first page, for volatile access.</summary>
    /// <param name="offset">A 4-byte aligned offset below 4096.</param>
    /// <returns>A reference into the shared page.</returns>
    public ref uint Index(int offset) => ref MemoryMarshal.Cast<byte, uint>(Page(0))[offset >> 2];

    /// <summary>Copies <paramref name="destination"/>.Length bytes from logical offset <paramref name="offset"/>.</summary>
    /// <param name="offset">The offset; the range must lie inside <see cref="Length"/>.</param>
    /// <param name="destination">Where to copy.</param>
    public void Read(int offset, Span<byte> destination)
    {
        while (!destination.IsEmpty)
        {
            int page = offset / SharedRing.PageSize, within = offset % SharedRing.PageSize;
            int n = Math.Min(destination.Length, SharedRing.PageSize - within);
            ReadOnlyPage(page).Slice(within, n).CopyTo(destination);
            destination = destination[n..];
            offset += n;
        }
    }

    /// <summary>Copies <paramref name="source"/> to logical offset <paramref name="offset"/>.</summary>
    /// <param name="offset">The offset; the range must lie inside <see cref="Length"/>.</param>
    /// <param name="source">What to copy.</param>
    public void Write(int offset, ReadOnlySpan<byte> source)
    {
        while (!source.IsEmpty)
        {
            int page = offset / SharedRing.PageSize, within = offset % SharedRing.PageSize;
            int n = Math.Min(source.Length, SharedRing.PageSize - within);
            source[..n].CopyTo(Page(page).Slice(within, n));
            source = source[n..];
            offset += n;
        }
    }

    /// <summary>Unmaps every page.</summary>
    public void Dispose()
    {
        for (int i = 0; i < _mapped; i++)
            _mapper.Unmap(_maps[i]);
        _mapped = 0;
    }
}
