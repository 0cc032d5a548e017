using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// Map flags and maptrack exhaustion, swap_grant_ref under v2, and a granter changing or ending its grants (or dying)
/// on one vCPU while a grantee maps, unmaps, copies or releases its mappings on another. Each test states what Xen 4.17
/// does and cites the function.
/// </summary>
public sealed unsafe class MapSwapRaceTests : IDisposable
{
    private const ulong Slot = 0x1000;
    private readonly TestMachine _m = new();
    private readonly TestDomain _front;
    private readonly TestDomain _back;
    private readonly InProcessGrantShare _share;

    public MapSwapRaceTests()
    {
        _front = _m.AddDomain(1);
        _back = _m.AddDomain(2);
        _share = new InProcessGrantShare(_m.Host, _front.Grant);
    }

    public void Dispose() => _m.Dispose();

    private uint Grant(int gfn, bool readOnly = false, ushort to = 2)
    {
        Assert.True(_share.TryGrantForeignAccess(to, (ulong)gfn, readOnly, out uint gref));
        return gref;
    }

    private GnttabMapGrantRef Map(uint gref, ulong gfn = Slot, uint flags = (uint)GrantMapFlags.HostMap, ushort dom = 1, TestDomain? by = null) =>
        _m.MapGrant(by ?? _back, dom, gref, gfn, (GrantMapFlags)flags);

    private short Unmap(uint handle, ulong gfn = Slot, TestDomain? by = null)
    {
        var op = new GnttabUnmapGrantRef { HostAddr = gfn << 12, Handle = handle };
        _m.Host.UnmapGrantRef((by ?? _back).Grant, ref op);
        return op.Status;
    }

    private short Swap(uint a, uint b, TestDomain? d = null)
    {
        var op = new GnttabSwapGrantRef { RefA = a, RefB = b };
        _m.Host.SwapGrantRef((d ?? _front).Grant, ref op);
        return op.Status;
    }

    private uint* HeaderV1(TestDomain granter, uint gref) =>
        (uint*)((GrantEntryV1*)_m.Memory.GetFramePointer(granter.Grant.GetSharedFrame(0)) + gref);

    private ushort FlagsV1(TestDomain granter, uint gref) => (ushort)Volatile.Read(ref *HeaderV1(granter, gref));

    private GrantEntryV2* EntryV2(TestDomain granter, uint gref) =>
        (GrantEntryV2*)_m.Memory.GetFramePointer(granter.Grant.GetSharedFrame(0)) + gref;

    private ushort StatusV2(TestDomain granter, uint gref) =>
        Volatile.Read(ref ((ushort*)_m.Memory.GetFramePointer(granter.Grant.GetStatusFrame(0)))[gref]);

    private bool Mapped(TestDomain d, ulong gfn) => d.Ept.TryLookup(new GuestFrameNumber(gfn), out _, out _);

    private const ushort Busy = (ushort)(GrantEntryFlags.Reading | GrantEntryFlags.Writing);

    // A granter racing a grantee: `rounds` times the frontend grants its page 5, lets the backend's loop (on its own
    // thread) run `use` on that reference at least once and a little longer, ends access (retrying while the grant is in
    // use) and runs `afterEnd`(reference, round). `use` returns true when it mapped the grant. Returns how many uses did.
    private int RaceGrants(int rounds, Func<uint, bool> use, Action<uint, int> afterEnd)
    {
        long current = -1;
        bool done = false;
        int calls = 0, maps = 0;
        Exception? failure = null;
        var grantee = new Thread(() =>
        {
            try
            {
                while (!Volatile.Read(ref done))
                {
                    long g = Volatile.Read(ref current);
                    if (g < 0)
                    {
                        Thread.Yield();
                        continue;
                    }

                    if (use((uint)g))
                    {
                        maps++;
                    }

                    Interlocked.Increment(ref calls);
                }
            }
            catch (Exception e)
            {
                Volatile.Write(ref failure, e);
            }
        });
        grantee.Start();
        try
        {
            for (int round = 0; round < rounds && Volatile.Read(ref failure) is null; round++)
            {
                uint gref = Grant(5);
                Volatile.Write(ref current, gref);
                int seen = Volatile.Read(ref calls);
                while (Volatile.Read(ref calls) < seen + 1 && Volatile.Read(ref failure) is null)
                {
                    Thread.SpinWait(10);
                }

                Thread.SpinWait(20 * (round % 32));
                while (!_share.EndForeignAccess(gref))
                {
                    Thread.SpinWait(5);
                }

                afterEnd(gref, round);
                Volatile.Write(ref current, -1);
            }
        }
        finally
        {
            Volatile.Write(ref done, true);
            grantee.Join();
        }

        Assert.Null(failure);
        return Volatile.Read(ref maps);
    }

    // Unmaps a handle the grantee's own map just returned: that must work.
    private bool UnmapLive(uint handle) =>
        Unmap(handle) == 0 ? true : throw new InvalidOperationException("unmap of a live handle failed");

    /// <summary>
    /// An HVM grantee passes a map flag other than GNTMAP_host_map and GNTMAP_readonly (a bit map_grant_ref does not
    /// reject up front: 1 &lt;&lt; 5, or GNTMAP_guest_avail0 = 1 &lt;&lt; 16). Xen: map_grant_ref pins and sets the
    /// status, then create_grant_host_mapping (x86 HVM: create_grant_p2m_mapping) refuses
    /// <c>(flags &amp; ~GNTMAP_readonly) != GNTMAP_host_map</c> with GNTST_general_error and map_grant_ref's undo_out
    /// drops the pin and clears GTF_reading/GTF_writing: nothing is mapped.
    /// </summary>
    [Theory]
    [InlineData(1u << 5)]
    [InlineData(1u << 16)]
    [InlineData(1u << 31)]
    public void Map_with_a_flag_other_than_host_map_and_readonly_fails_and_leaves_nothing(uint extra)
    {
        uint gref = Grant(5);
        GnttabMapGrantRef op = Map(gref, flags: (uint)GrantMapFlags.HostMap | extra);

        Assert.Equal((short)GrantStatus.GeneralError, op.Status);
        Assert.False(Mapped(_back, Slot));
        Assert.Equal(0, _back.Grant.MappingCount);
        Assert.Equal(0u, _front.Grant.GetPinCount(gref));
        Assert.Equal(0, FlagsV1(_front, gref) & Busy);
        Assert.Equal(0, _m.Frames.ReferenceCount(_front.Ram[5]));
    }

    /// <summary>
    /// The granter sets a cache attribute (GTF_PWT, GTF_PCD or GTF_PAT) in its entry. Xen: map_grant_ref reads them
    /// (<c>cache_flags</c>) but passes them to create_grant_host_mapping only for I/O memory (a frame owned by dom_io);
    /// a RAM frame of the granter is mapped with none (the call's cache_flags argument is 0), so the attribute is
    /// ignored and the map succeeds, for a first map and for one joining an earlier mapping's pin, as without it.
    /// </summary>
    [Theory]
    [InlineData(GrantEntryFlags.Pwt, 1u)]
    [InlineData(GrantEntryFlags.Pcd, 1u)]
    [InlineData(GrantEntryFlags.Pat, 1u)]
    [InlineData(GrantEntryFlags.Pcd, 2u)]
    public void Map_of_a_ram_entry_ignores_its_cache_attribute(GrantEntryFlags cache, uint version)
    {
        if (version == 2)
        {
            var v = new GnttabSetVersion { Version = 2 };
            Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));
        }

        uint gref = Grant(5);
        uint* header = version == 1 ? HeaderV1(_front, gref) : (uint*)EntryV2(_front, gref); // flags, then domid
        ushort Status() => version == 1 ? FlagsV1(_front, gref) : StatusV2(_front, gref);
        Interlocked.Or(ref *header, (uint)cache);

        GnttabMapGrantRef first = Map(gref);
        Assert.Equal(0, first.Status);
        Assert.True(_back.Ept.TryLookup(new GuestFrameNumber(Slot), out MachineFrameNumber frame, out EptAccess access));
        Assert.Equal(_front.Ram[5], frame);
        Assert.Equal(EptAccess.Read | EptAccess.Write, access);
        Assert.Equal(Busy, Status() & Busy);

        GnttabMapGrantRef second = Map(gref, Slot + 1, (uint)(GrantMapFlags.HostMap | GrantMapFlags.ReadOnly));
        Assert.Equal(0, second.Status);
        Assert.True(Mapped(_back, Slot + 1));
        Assert.Equal(2, _back.Grant.MappingCount);
        Assert.Equal(ActiveGrantEntry.HostWriteIncrement + ActiveGrantEntry.HostReadIncrement, _front.Grant.GetPinCount(gref));
        Assert.Equal(2, _m.Frames.ReferenceCount(_front.Ram[5]));

        Assert.Equal(0, Unmap(first.Handle));
        Assert.Equal(0, Unmap(second.Handle, Slot + 1));
        Assert.Equal(0u, _front.Grant.GetPinCount(gref));
        Assert.Equal(0, Status() & Busy);
        Assert.Equal(0, _m.Frames.ReferenceCount(_front.Ram[5]));
    }

    /// <summary>
    /// grant_table.h lets a granter change an in-use entry from writable to read-only ("Use SMP-safe CMPXCHG to set
    /// GTF_readonly, while checking !GTF_writing") and back ("Use SMP-safe bit-setting instruction"). Here the frontend
    /// does exactly that while the backend copies from the grant (GTF_reading only). Xen's release_grant_for_copy clears
    /// GTF_reading with gnttab_clear_flags, an atomic read-modify-write of the 16-bit flags (guest_clear_mask16 / a
    /// cmpxchg loop), so the granter's GTF_readonly is never lost. A plain load and store of the flags (ReleaseBits16)
    /// writes back the value it loaded: a downgrade to read-only landing in between is undone, and the grantee regains
    /// write access its granter took away.
    /// </summary>
    [Fact]
    public void A_granter_setting_readonly_while_a_copy_reads_the_grant_is_never_undone_by_the_copys_release()
    {
        uint gref = Grant(5);
        uint* header = HeaderV1(_front, gref);
        const uint ro = (uint)GrantEntryFlags.ReadOnly;
        bool done = false;
        long calls = 0;
        Exception? failure = null;
        var copier = new Thread(() =>
        {
            try
            {
                var op = new GnttabCopy
                {
                    Source = new() { Ref = gref, DomId = 1 },
                    Dest = new() { Gmfn = 3, DomId = DomainId.Self },
                    Len = 8,
                    Flags = (ushort)GrantCopyFlags.SourceGref,
                };
                while (!Volatile.Read(ref done))
                {
                    _m.Host.Copy(_back.Grant, ref op);
                    if (op.Status != 0)
                    {
                        throw new InvalidOperationException($"copy failed: {(GrantStatus)op.Status}");
                    }

                    Interlocked.Increment(ref calls);
                }
            }
            catch (Exception e)
            {
                Volatile.Write(ref failure, e);
            }
        });
        copier.Start();
        int lost = 0, rounds = 0;
        var rng = new Random(1);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        try
        {
            while (clock.Elapsed < TimeSpan.FromSeconds(8) && lost == 0 && Volatile.Read(ref failure) is null)
            {
                rounds++;
                Thread.SpinWait(rng.Next(64));

                // Writable -> read-only: compare-exchange while !GTF_writing (GTF_reading may be set by the copy).
                while (true)
                {
                    uint combo = Volatile.Read(ref *header);
                    if ((combo & (uint)GrantEntryFlags.Writing) == 0 && Interlocked.CompareExchange(ref *header, combo | ro, combo) == combo)
                    {
                        break;
                    }
                }

                long seen = Interlocked.Read(ref calls);
                while (Interlocked.Read(ref calls) < seen + 2 && Volatile.Read(ref failure) is null)
                {
                    Thread.SpinWait(1);
                }

                if ((Volatile.Read(ref *header) & ro) == 0)
                {
                    lost++;
                }

                // Read-only -> writable: an atomic bit clear.
                Interlocked.And(ref *header, ~ro);
            }
        }
        finally
        {
            Volatile.Write(ref done, true);
            copier.Join();
        }

        Assert.Null(failure);
        Assert.True(lost == 0, $"the granter's GTF_readonly was undone by a copy's release after {rounds} round(s)");
        Assert.Equal(0u, _front.Grant.GetPinCount(gref));
        Assert.Equal(0, FlagsV1(_front, gref) & Busy);
    }

    /// <summary>
    /// A grantee maps until its maptrack is full (get_maptrack_handle fails). Xen 4.17's map_grant_ref reports
    /// GNTST_no_space ("Failed to obtain maptrack handle"); GNTST_no_device_space was replaced there by the commit that
    /// added GNTST_no_space (-13, "Out of space (handles etc)") to public/grant_table.h, as it has nothing to do with
    /// device (IOMMU) space. Nothing is pinned by the failed map.
    /// </summary>
    [Fact]
    public void A_map_with_no_maptrack_handle_left_fails_with_no_space()
    {
        TestDomain small = _m.AddDomain(3, new GrantTableLimits(1, 1));
        for (int i = 0; i < GrantTableLimits.MaptrackPerFrame; i++)
        {
            Assert.Equal(0, Map(Grant(5, readOnly: true, to: 3), 0x4000 + (ulong)i, (uint)(GrantMapFlags.HostMap | GrantMapFlags.ReadOnly), by: small).Status);
        }

        uint last = Grant(6, readOnly: true, to: 3);
        GnttabMapGrantRef op = Map(last, 0x5000, (uint)(GrantMapFlags.HostMap | GrantMapFlags.ReadOnly), by: small);
        Assert.Equal((short)GrantStatus.NoSpace, op.Status);
        Assert.Equal(0u, _front.Grant.GetPinCount(last));
        Assert.Equal(0, FlagsV1(_front, last) & Busy);
    }

    /// <summary>
    /// swap_grant_ref under v2: bounds of both references first (GNTST_bad_gntref), then a reference swapped with
    /// itself is a no-op even when pinned, then GNTST_eagain for a pinned one; the v2 entry and its status entry move
    /// together (reserved references included).
    /// </summary>
    [Fact]
    public void Swap_under_v2_moves_entries_with_their_status_and_checks_bounds_before_pins()
    {
        var v = new GnttabSetVersion { Version = 2 };
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));
        uint a = Grant(5), b = Grant(6);
        Assert.Equal(0, Swap(a, b));
        GnttabMapGrantRef m = Map(a);
        Assert.Equal(0, m.Status);
        Assert.Equal(_front.Ram[6].Address, m.DevBusAddr);   // a now names what b named
        Assert.Equal(Busy, StatusV2(_front, a));
        Assert.Equal(0, StatusV2(_front, b));

        Assert.Equal((short)GrantStatus.Eagain, Swap(a, b));
        Assert.Equal((short)GrantStatus.Eagain, Swap(b, a));
        Assert.Equal(0, Swap(a, a));                          // "Swapping the same ref is a no-op", pinned or not
        Assert.Equal((short)GrantStatus.BadGntref, Swap(a, 256));   // 256 v2 entries per frame: bounds first
        Assert.Equal((short)GrantStatus.BadGntref, Swap(256, 256));
        Assert.Equal(Busy, StatusV2(_front, a));

        // Reserved references swap like any other (entry and status word).
        EntryV2(_front, 0)->DomId = 2;
        EntryV2(_front, 0)->Frame = 7;
        Volatile.Write(ref EntryV2(_front, 0)->Flags, (ushort)GrantEntryFlags.PermitAccess);
        Assert.Equal(0, Swap(0, 1));
        GnttabMapGrantRef r = Map(1, Slot + 1);
        Assert.Equal(0, r.Status);
        Assert.Equal(_front.Ram[7].Address, r.DevBusAddr);
        Assert.Equal(Busy, StatusV2(_front, 1));
        Assert.Equal(0, StatusV2(_front, 0));

        Assert.Equal(0, Unmap(m.Handle));
        Assert.Equal(0, Unmap(r.Handle, Slot + 1));
        Assert.Equal(0, StatusV2(_front, a));
        Assert.Equal(0, StatusV2(_front, 1));
    }

    /// <summary>
    /// The frontend ends access (gnttab_end_foreign_access_ref_v1 / _v2) and grants again while the backend maps,
    /// copies through and unmaps the grant in a loop. Right after an end of access succeeds nobody holds the grant
    /// (pin 0: map_grant_ref/acquire_grant_for_copy saw the entry invalid); at the end no flag, pin, reference or EPT
    /// entry is left.
    /// </summary>
    [Theory]
    [InlineData(1u)]
    [InlineData(2u)]
    public void End_of_access_racing_map_copy_unmap_leaves_no_flag_pin_reference_or_mapping(uint version)
    {
        if (version == 2)
        {
            var v = new GnttabSetVersion { Version = 2 };
            Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));
        }

        int maps = RaceGrants(300, g =>
        {
            GnttabMapGrantRef m = Map(g);
            var copy = new GnttabCopy
            {
                Source = new() { Gmfn = 7, DomId = DomainId.Self },
                Dest = new() { Ref = g, DomId = 1 },
                Len = 64,
                Flags = (ushort)GrantCopyFlags.DestGref,
            };
            _m.Host.Copy(_back.Grant, ref copy);
            return m.Status == 0 && UnmapLive(m.Handle);
        },
        (gref, _) => Assert.Equal(0u, _front.Grant.GetPinCount(gref)));

        Assert.True(maps > 0, "no map succeeded: the race was not exercised");
        Assert.Equal(0, _back.Grant.MappingCount);
        Assert.False(Mapped(_back, Slot));
        Assert.Equal(0, _m.Frames.ReferenceCount(_front.Ram[5]));
        for (uint g = 8; g < 16; g++)
        {
            Assert.Equal(0u, _front.Grant.GetPinCount(g));
            Assert.Equal(0, (version == 1 ? FlagsV1(_front, g) : StatusV2(_front, g)) & Busy);
        }
    }

    /// <summary>
    /// Each round a new granter grants its page and dies (grant state destroyed, RAM freed) while the backend maps and
    /// unmaps the grant in a loop. A map after the death fails with GNTST_bad_domain (rcu_lock_domain_by_id); a mapping
    /// made before it unmaps normally and its frame, kept by the mapping's reference, is freed then: no reference or
    /// pending free is left.
    /// </summary>
    [Fact]
    public void Maps_racing_the_granters_death_unmap_cleanly_and_free_its_frames()
    {
        long current = -1;   // round << 32 | gref
        int killedRound = -1;
        bool done = false;
        int calls = 0, mapsAfterDeath = 0, mapsBefore = 0;
        Exception? failure = null;
        var grantee = new Thread(() =>
        {
            try
            {
                while (!Volatile.Read(ref done))
                {
                    long c = Volatile.Read(ref current);
                    if (c < 0)
                    {
                        Thread.Yield();
                        continue;
                    }

                    int round = (int)(c >> 32);
                    bool dead = Volatile.Read(ref killedRound) >= round;
                    GnttabMapGrantRef m = Map((uint)c, dom: (ushort)(3 + round));
                    if (m.Status == 0)
                    {
                        if (dead)
                        {
                            mapsAfterDeath++;
                        }
                        else
                        {
                            mapsBefore++;
                        }

                        Thread.SpinWait(50);
                        if (Unmap(m.Handle) != 0)
                        {
                            throw new InvalidOperationException("unmap of a live handle failed");
                        }
                    }
                    else if (dead && m.Status != (short)GrantStatus.BadDomain)
                    {
                        throw new InvalidOperationException($"map of a dead granter: {(GrantStatus)m.Status}");
                    }

                    Interlocked.Increment(ref calls);
                }
            }
            catch (Exception e)
            {
                Volatile.Write(ref failure, e);
            }
        });
        grantee.Start();
        var frames = new List<MachineFrameNumber>();
        try
        {
            for (int round = 0; round < 60 && Volatile.Read(ref failure) is null; round++)
            {
                TestDomain granter = _m.AddDomain((ushort)(3 + round));
                frames.Add(granter.Ram[5]);
                Assert.True(new InProcessGrantShare(_m.Host, granter.Grant).TryGrantForeignAccess(2, 5, readOnly: false, out uint gref));
                Volatile.Write(ref current, ((long)round << 32) | gref);
                int seen = Volatile.Read(ref calls);
                while (Volatile.Read(ref calls) < seen + 1 && Volatile.Read(ref failure) is null)
                {
                    Thread.SpinWait(10);
                }

                Thread.SpinWait(50 * (round % 16));
                _m.Kill(granter);
                Volatile.Write(ref killedRound, round);
                seen = Volatile.Read(ref calls);
                while (Volatile.Read(ref calls) < seen + 2 && Volatile.Read(ref failure) is null)
                {
                    Thread.SpinWait(10);
                }

                Volatile.Write(ref current, -1);
            }
        }
        finally
        {
            Volatile.Write(ref done, true);
            grantee.Join();
        }

        Assert.Null(failure);
        Assert.Equal(0, mapsAfterDeath);
        Assert.True(mapsBefore > 0, "no map succeeded: the race was not exercised");
        Assert.Equal(0, _back.Grant.MappingCount);
        Assert.Equal(0, _m.Frames.PendingFreeCount);
        Assert.All(frames, f => Assert.False(_m.Memory.TryGetOwner(f, out _), $"{f} was never freed"));
    }

    /// <summary>
    /// ReleaseMappings on one thread while another unmaps the same handles one by one: every mapping is released
    /// exactly once (by one or the other; the loser gets GNTST_bad_handle, as unmap_common for a zero-flags entry).
    /// </summary>
    [Fact]
    public void ReleaseMappings_racing_unmaps_releases_each_mapping_exactly_once()
    {
        const int n = 48;
        for (int round = 0; round < 40; round++)
        {
            var handles = new uint[n];
            var grefs = new uint[n];
            for (int i = 0; i < n; i++)
            {
                grefs[i] = Grant(8 + (i % 16));
                GnttabMapGrantRef m = Map(grefs[i], Slot + (ulong)i, (uint)(GrantMapFlags.HostMap | (i % 2 == 0 ? GrantMapFlags.ReadOnly : 0)));
                Assert.Equal(0, m.Status);
                handles[i] = m.Handle;
            }

            int unmapped = 0, other = 0;
            var unmapper = new Thread(() =>
            {
                for (int i = 0; i < n; i++)
                {
                    short s = Unmap(handles[i], Slot + (ulong)i);
                    if (s == 0)
                    {
                        unmapped++;
                    }
                    else if (s != (short)GrantStatus.BadHandle)
                    {
                        other++;
                    }
                }
            });
            unmapper.Start();
            Thread.SpinWait(200 * round);
            int released = _m.Host.ReleaseMappings(_back.Grant);
            unmapper.Join();

            Assert.Equal(0, other);
            Assert.Equal(n, released + unmapped);
            Assert.Equal(0, _back.Grant.MappingCount);
            for (int i = 0; i < n; i++)
            {
                Assert.False(Mapped(_back, Slot + (ulong)i));
                Assert.Equal(0u, _front.Grant.GetPinCount(grefs[i]));
                Assert.Equal(0, FlagsV1(_front, grefs[i]) & Busy);
                Assert.True(_share.EndForeignAccess(grefs[i]));
            }

            for (int f = 8; f < 24; f++)
            {
                Assert.Equal(0, _m.Frames.ReferenceCount(_front.Ram[f]));
            }
        }
    }

    /// <summary>
    /// The frontend switches its table version back and forth (gnttab_set_version) between grants while the backend maps
    /// and unmaps whatever reference is current. Once every grant past the reserved ones has ended, set_version never
    /// reports -EBUSY (no pin outlived its grant), and nothing is left pinned, flagged, referenced or mapped.
    /// </summary>
    [Fact]
    public void Set_version_between_grants_racing_maps_is_never_busy_once_access_ended()
    {
        int maps = RaceGrants(200, g =>
        {
            GnttabMapGrantRef m = Map(g);
            return m.Status == 0 && UnmapLive(m.Handle);
        },
        (_, round) =>
        {
            var v = new GnttabSetVersion { Version = (uint)(round % 2 == 0 ? 2 : 1) };
            Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));
        });

        Assert.True(maps > 0, "no map succeeded: the race was not exercised");
        Assert.Equal(0, _back.Grant.MappingCount);
        Assert.False(Mapped(_back, Slot));
        Assert.Equal(0, _m.Frames.ReferenceCount(_front.Ram[5]));
        Assert.Equal(0u, _front.Grant.GetPinCount(8));
    }
}
