namespace VmmKit.GrantTable.Tests;

/// <summary>
/// A hostile-budget review of the package: work a guest can make the host do must be O(1) amortised per operation,
/// or bounded by the domain's <see cref="GrantTableLimits"/> and preemptible between operations. Each test names what
/// the guest does, what it cost the host before, and what bounds it now; none measures time.
/// </summary>
public sealed class BudgetReviewTests : IDisposable
{
    private readonly TestMachine _m = new();
    private readonly TestDomain _front;
    private readonly TestDomain _back;
    private readonly InProcessGrantShare _share;

    public BudgetReviewTests()
    {
        _front = _m.AddDomain(1);
        _back = _m.AddDomain(2);
        _share = new InProcessGrantShare(_m.Host, _front.Grant);
    }

    public void Dispose() => _m.Dispose();

    private short Unmap(uint handle, ulong gfn)
    {
        var op = new GnttabUnmapGrantRef { HostAddr = gfn << 12, Handle = handle };
        _m.Host.UnmapGrantRef(_back.Grant, ref op);
        return op.Status;
    }

    // Maps `count` mappings at the guest frames `gfnOf(i)`, spreading them over grants of d1's RAM; their handles.
    private uint[] MapMany(int count, Func<int, ulong> gfnOf)
    {
        var handles = new uint[count];
        uint gref = 0;
        for (int i = 0; i < count; i++)
        {
            if (i % 100 == 0)
            {
                Assert.True(_share.TryGrantForeignAccess(2, (ulong)(i / 100 % TestMachine.RamFrames), readOnly: true, out gref));
            }

            GnttabMapGrantRef op = _m.MapGrant(_back, 1, gref, gfnOf(i), readOnly: true);
            Assert.Equal(0, op.Status);
            handles[i] = op.Handle;
        }

        return handles;
    }

    // The longest chain of a dictionary's buckets: what a lookup of a key in that bucket walks. Computed as Dictionary
    // places keys, by its comparer's hash modulo its bucket count (its capacity).
    private static int LongestChain<TValue>(Dictionary<ulong, TValue> dictionary)
    {
        int buckets = dictionary.EnsureCapacity(0);
        var chains = new Dictionary<uint, int>();
        int longest = 0;
        foreach (ulong key in dictionary.Keys)
        {
            uint bucket = (uint)dictionary.Comparer.GetHashCode(key) % (uint)buckets;
            chains[bucket] = chains.GetValueOrDefault(bucket) + 1;
            longest = Math.Max(longest, chains[bucket]);
        }

        return longest;
    }

    /// <summary>
    /// The guest chooses where its grant mappings go (host_addr), and the host finds them by guest frame in a
    /// dictionary (GrantMappedGfns) at every map, unmap, table-frame placement and copy-side frame resolution, under
    /// the exclusive lock. ulong's own hash is the low 32 bits XOR the high 32 and Dictionary's bucket is that modulo
    /// its bucket count P, which the guest can work out from how many mappings it made: mappings at frames k·P all
    /// land in one bucket. Before, a guest with the default 1024 maptrack frames grew the dictionary past 175,447
    /// entries (P = 350,899), unmapped them, then mapped some 195,000 grants at frames k·P below 2^36: the k-th map
    /// walked k entries, some 1.9·10^10 comparisons (tens of seconds of host time, each map up to ~200 µs under the lock
    /// every domain's grant operations and copies wait for, 500 times a map's cost), and every map or unmap after that
    /// walked all of them. Now guest frames are hashed with a random key per domain (vector multiply-shift, strongly
    /// universal), so the guest cannot aim at a bucket: the chains stay a few entries long however it chooses.
    /// </summary>
    [Fact]
    public void Grant_mappings_at_frames_a_guest_chooses_do_not_share_one_bucket()
    {
        // Grow the dictionary, then empty it (a dictionary keeps its buckets).
        uint[] fillers = MapMany(600, i => 0x10000 + (ulong)i);
        for (int i = 0; i < fillers.Length; i++)
        {
            Assert.Equal(0, Unmap(fillers[i], 0x10000 + (ulong)i));
        }

        Dictionary<ulong, uint> mapped = _back.Grant.GrantMappedGfns;
        int buckets = mapped.EnsureCapacity(0);
        Assert.True(buckets > 600, $"{buckets} buckets");

        // Every frame k·P (with ulong's hash and Dictionary's modulo, one bucket), below the bucket count so that the
        // dictionary does not grow and move them.
        const int Aimed = 500;
        _ = MapMany(Aimed, i => (ulong)buckets * (ulong)(i + 1));
        Assert.Equal(Aimed, _back.Grant.MappingCount);
        Assert.Equal(buckets, mapped.EnsureCapacity(0));

        int longest = LongestChain(mapped);
        Assert.True(longest <= 16, $"{Aimed} mappings at frames the guest aimed at one bucket: a chain of {longest}");
    }

    /// <summary>
    /// A domain's grant mappings are released when it dies (DestroyDomain, Xen's gnttab_release_mappings) or when the
    /// user space owning them goes (ReleaseMappings). The guest decides how many there are (up to 262,144 with the
    /// default 1024 maptrack frames) and where (each at a frame of its own EPT table, so that each unmap also retires
    /// tables). Before, every one was released in one hold of the exclusive lock: some 0.4 s during which no grant
    /// operation or copy of any domain ran, at every death of such a guest (a guest that reboots in a loop). Xen
    /// releases them preemptibly (domain_teardown's PROGRESS(gnttab_mappings), -ERESTART). Now the maptrack is walked
    /// <see cref="GrantTableHost.ReleaseChunk"/> handles per hold, each hold with its own flush before its pages go;
    /// a dying domain maps nothing meanwhile.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Releasing_a_domain_s_mappings_holds_the_exclusive_lock_for_a_bounded_number_of_them(bool destroy)
    {
        const int Mappings = 3 * GrantTableHost.ReleaseChunk;
        _ = MapMany(Mappings, i => 0x10000 + (ulong)i);
        Assert.True(_share.TryGrantForeignAccess(2, 3, readOnly: true, out uint late));

        // At each flush (one per hold, under it): the mappings still held; and, for a dying domain, a map it tries
        // meanwhile is refused.
        var left = new List<int>();
        var refused = new List<short>();
        _m.Host.FlushTranslations = d =>
        {
            Assert.Same(_back.Grant, d);
            left.Add(d.MappingCount);
            if (destroy)
            {
                GnttabMapGrantRef op = _m.MapGrant(_back, 1, late, 0x9000);
                refused.Add(op.Status);
            }
        };

        if (destroy)
        {
            _m.Host.DestroyDomain(_back.Grant);
        }
        else
        {
            Assert.Equal(Mappings, _m.Host.ReleaseMappings(_back.Grant));
        }

        Assert.Equal([Mappings, 2 * GrantTableHost.ReleaseChunk, GrantTableHost.ReleaseChunk], left);
        Assert.All(refused, s => Assert.Equal((short)GrantStatus.BadDomain, s));
        Assert.Equal(0, _back.Grant.MappingCount);
        for (uint gref = 0; gref < (uint)_front.Grant.EntryCount; gref++)
        {
            Assert.Equal(0u, _front.Grant.GetPinCount(gref));
        }

        foreach (var frame in _front.Ram)
        {
            Assert.Equal(0, _m.Frames.ReferenceCount(frame));
        }
    }

    /// <summary>
    /// DestroyDomain releases the mappings over several holds of the exclusive lock, and the domain's id leaves the
    /// host's table in the first. Until the last hold the dying domain's pins still carry its id in the grants of
    /// others (act->domid), so a new domain given that id meanwhile would be taken for it: it could join a pin the dying
    /// domain's release then drops. Xen keeps a dying domain's id taken until the domain is freed. So does the host:
    /// CreateDomain refuses the id until DestroyDomain ends (here asked from the flush of its first hold).
    /// </summary>
    [Fact]
    public void A_domain_id_stays_taken_until_its_destroy_ends()
    {
        _ = MapMany(3, i => 0x10000 + (ulong)i);
        var refused = new List<string>();
        _m.Host.FlushTranslations = d =>
        {
            var ept = new Ept.EptTables(_m.Memory, new Ept.FrameOwner(2));
            try
            {
                _m.Host.CreateDomain(2, ept);
                refused.Add("created");
            }
            catch (ArgumentException e)
            {
                refused.Add(e.ParamName ?? "");
            }
            finally
            {
                ept.Dispose();
            }
        };

        _m.Host.DestroyDomain(_back.Grant);
        Assert.Equal(["domainId"], refused);

        _m.Host.FlushTranslations = null;
        using var ept = new Ept.EptTables(_m.Memory, new Ept.FrameOwner(2));
        Assert.Equal((ushort)2, _m.Host.CreateDomain(2, ept).Id);
    }

    /// <summary>
    /// gnttab_grow_table: a guest grows its table a frame at a time (add_to_physmap of index 1, 2, ... or setup_table
    /// asking one more each time), up to its limit. The host's active entries (one per grant entry) grew with each
    /// frame, copying all of them under the exclusive lock: at a limit of 1024 frames, 1023 copies and some 6.4 GB
    /// allocated. Now the array doubles (capped at the limit), so it is replaced some log2(frames) times.
    /// </summary>
    [Fact]
    public void Growing_the_table_a_frame_at_a_time_replaces_its_active_entries_a_logarithmic_number_of_times()
    {
        const int Frames = 64;
        TestDomain big = _m.AddDomain(3, new GrantTableLimits(Frames, 1));
        ActiveGrantEntry[] active = big.Grant.Active;
        int replaced = 0;
        for (ulong idx = 1; idx < Frames; idx++)
        {
            Assert.Equal(0, _m.Host.AddToPhysmap(big.Grant, idx, new Ept.GuestFrameNumber(0x20000 + idx)));
            Assert.Equal((int)idx + 1, big.Grant.SharedFrameCount);
            Assert.True(big.Grant.Active.Length >= big.Grant.EntryCount);
            if (!ReferenceEquals(active, big.Grant.Active))
            {
                active = big.Grant.Active;
                replaced++;
            }
        }

        // 2, 4, 8, 16, 32 and 64 frames' worth: six arrays, where a frame at a time made 63.
        Assert.True(replaced <= 6, $"the active entries were replaced {replaced} times growing to {Frames} frames");
    }
}
