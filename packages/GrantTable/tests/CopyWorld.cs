namespace VmmKit.GrantTable.Tests;

/// <summary>
/// The same three domains on every machine of a test that compares machines (CopyBatchEquivalenceTests,
/// HypercallReviewTests): domain 1 grants its frame 5 read-only and its frame 6 writable to domain 2 (the caller), and
/// its frame 7 to domain 3; every page holds a pattern of its own.
/// </summary>
internal sealed class CopyWorld : IDisposable
{
    /// <summary>RAM frames of each domain that operations name: gfn 0..15.</summary>
    public const int Pages = 16;

    public readonly TestMachine M = new(8UL << 20);
    public readonly TestDomain Front, Back, Other;
    public readonly uint[] Grefs = new uint[3];

    public CopyWorld()
    {
        Front = M.AddDomain(1);
        Back = M.AddDomain(2);
        Other = M.AddDomain(3);
        foreach (TestDomain d in (TestDomain[])[Front, Back, Other])
        {
            for (int gfn = 0; gfn < Pages; gfn++)
            {
                Span<byte> page = d.RamPage(gfn);
                for (int i = 0; i < page.Length; i++)
                {
                    page[i] = (byte)((d.Id * 31) + (gfn * 7) + i);
                }
            }
        }

        var share = new InProcessGrantShare(M.Host, Front.Grant);
        Assert.True(share.TryGrantForeignAccess(2, 5, readOnly: true, out Grefs[0]));
        Assert.True(share.TryGrantForeignAccess(2, 6, readOnly: false, out Grefs[1]));
        Assert.True(share.TryGrantForeignAccess(3, 7, readOnly: false, out Grefs[2]));
    }

    public void AssertSameAs(CopyWorld other)
    {
        Assert.Equal(other.Grefs, Grefs);
        foreach (uint gref in Grefs)
        {
            Assert.Equal(0u, Front.Grant.GetPinCount(gref));
            Assert.Equal(0u, other.Front.Grant.GetPinCount(gref));
        }

        // The grant table (flags with GTF_reading/GTF_writing, domids, frames) and every page of every domain.
        Assert.True(M.Memory.GetFrame(Front.Grant.GetSharedFrame(0)).SequenceEqual(other.M.Memory.GetFrame(other.Front.Grant.GetSharedFrame(0))), "grant tables differ");
        foreach ((TestDomain a, TestDomain b) in (ReadOnlySpan<(TestDomain, TestDomain)>)[(Front, other.Front), (Back, other.Back), (Other, other.Other)])
        {
            for (int gfn = 0; gfn < Pages; gfn++)
            {
                Assert.True(a.RamPage(gfn).SequenceEqual(b.RamPage(gfn)), $"domain {a.Id} page {gfn} differs");
            }
        }
    }

    public void Dispose() => M.Dispose();
}
