using VmmKit.Ept;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// <see cref="InProcessGrantShare"/> grows its domain's table when every reference is taken, as Linux's
/// <c>gnttab_expand</c> does (get_free_entries: when the free list runs short, the table grows by the frames the request
/// needs, up to <c>gnttab_max_grant_frames</c>, which query_size reports): a frontend that grants more pages than
/// one table frame holds keeps working, and one at its domain's limit is refused as Linux's -ENOSPC.
/// </summary>
public sealed class ClientGrowthTests : IDisposable
{
    private readonly TestMachine _m = new();

    public void Dispose() => _m.Dispose();

    private (TestDomain Front, TestDomain Back, InProcessGrantShare Share) World(int maxGrantFrames, int version)
    {
        Assert.True(_m.Host.TryCreateLimits(maxGrantFrames, -1, 2, out GrantTableLimits limits));
        TestDomain front = _m.AddDomain(1, limits);
        TestDomain back = _m.AddDomain(2);
        if (version == 2)
        {
            var v = new GnttabSetVersion { Version = 2 };
            Assert.Equal(0, _m.Host.SetVersion(front.Grant, ref v));
        }

        return (front, back, new InProcessGrantShare(_m.Host, front.Grant));
    }

    [Theory]
    [InlineData(1, 512)]
    [InlineData(2, 256)]
    public void Granting_past_the_first_frame_grows_the_table_and_the_new_grants_work(int version, int perFrame)
    {
        (TestDomain front, TestDomain back, InProcessGrantShare share) = World(4, version);
        Assert.Equal(1, front.Grant.SharedFrameCount);

        // Every reference of the first frame (0-7 are reserved), then some of the second.
        int wanted = perFrame - 8 + 10;
        var refs = new List<uint>();
        for (int i = 0; i < wanted; i++)
        {
            Assert.True(share.TryGrantForeignAccess(2, (ulong)(i % TestMachine.RamFrames), readOnly: false, out uint gref), $"grant {i}");
            refs.Add(gref);
        }

        Assert.Equal(2, front.Grant.SharedFrameCount);
        Assert.Equal(wanted, refs.Distinct().Count());
        Assert.All(refs, r => Assert.InRange(r, 8u, (uint)(2 * perFrame) - 1));
        if (version == 2)
        {
            Assert.Equal(GrantDomain.StatusFramesFor(2), front.Grant.StatusFrameCount);
        }

        // The last grant lies in the new frame: the backend maps it, writes through it, and the frontend sees it.
        uint last = refs[^1];
        Assert.True(last >= (uint)perFrame);
        var mapper = new InProcessGrantMapper(_m.Host, back.Grant, new GuestFrameNumber(0x1000), 1);
        Assert.Equal(GrantStatus.Okay, mapper.TryMap(1, last, readOnly: false, out GrantMapping mapping));
        Assert.True(share.IsForeignAccessInUse(last));
        mapper.GetPage(mapping)[7] = 0x5A;
        Assert.Equal(0x5A, front.RamPage((wanted - 1) % TestMachine.RamFrames)[7]);
        Assert.Equal(GrantStatus.Okay, mapper.Unmap(mapping));
        Assert.True(share.EndForeignAccess(last));
    }

    [Fact]
    public void At_the_domains_limit_a_grant_is_refused_and_the_table_stops_growing()
    {
        (TestDomain front, _, InProcessGrantShare share) = World(2, 1);
        int capacity = (2 * 512) - 8;
        for (int i = 0; i < capacity; i++)
        {
            Assert.True(share.TryGrantForeignAccess(2, 3, readOnly: true, out _), $"grant {i}");
        }

        Assert.False(share.TryGrantForeignAccess(2, 3, readOnly: true, out uint refused));
        Assert.Equal(0u, refused);
        Assert.Equal(2, front.Grant.SharedFrameCount);

        // An ended reference is granted again without growing anything.
        Assert.True(share.EndForeignAccess(100));
        Assert.True(share.TryGrantForeignAccess(2, 4, readOnly: true, out uint again));
        Assert.Equal(100u, again);
    }

    [Fact]
    public void A_destroyed_domain_grants_nothing_and_grows_nothing()
    {
        (TestDomain front, _, InProcessGrantShare share) = World(4, 1);
        _m.Kill(front);
        Assert.False(share.TryGrantForeignAccess(2, 3, readOnly: true, out _));
    }
}
