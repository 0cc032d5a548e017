using VmmKit.Ept;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// The in-process clients (<see cref="InProcessGrantShare"/>, <see cref="InProcessGrantMapper"/>) misused by their
/// caller: each test asserts the documented result (or Linux's drivers/xen/grant-table.c, which the share mirrors), never
/// a host exception or a write outside the caller's own frames.
/// </summary>
public sealed class ClientMisuseTests : IDisposable
{
    private readonly TestMachine _m = new();
    private readonly TestDomain _front;
    private readonly TestDomain _back;
    private readonly InProcessGrantShare _share;

    public ClientMisuseTests()
    {
        _front = _m.AddDomain(1);
        _back = _m.AddDomain(2);
        _share = new InProcessGrantShare(_m.Host, _front.Grant);
    }

    public void Dispose() => _m.Dispose();

    [Fact]
    public void Granting_a_frame_a_v1_entry_cannot_hold_neither_throws_overflow_nor_leaks_a_reference()
    {
        // A v1 entry's frame is 32 bits (grant_entry_v1_t; Linux uses v2 when frames may not fit, gnttab_need_v2).
        // IGrantShare.TryGrantForeignAccess refuses such a frame with false, before it takes a reference.
        bool granted = true;
        Assert.Null(Record.Exception(() => granted = _share.TryGrantForeignAccess(2, 1UL << 32, false, out _)));
        Assert.False(granted);
        Assert.True(_share.TryGrantForeignAccess(2, 5, false, out uint next));
        Assert.Equal(8u, next); // the first free reference, not one past a leaked one
    }

    [Fact]
    public void A_reference_a_version_switch_left_past_the_table_can_still_be_queried_and_ended()
    {
        // gnttab_set_version only refuses while entries are pinned; it clears every non-reserved entry, so a grant
        // the guest had not ended is gone. Its reference (256: past the 256 entries of one v2 frame) must still give
        // the answers IGrantShare documents for a reference the table no longer has: not in use, and ending it
        // succeeds and frees it.
        uint last = 0;
        for (int i = 8; i <= 256; i++)
        {
            Assert.True(_share.TryGrantForeignAccess(2, 5, false, out last));
        }

        Assert.Equal(256u, last);
        var v = new GnttabSetVersion { Version = 2 };
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));

        bool inUse = true, ended = false;
        Assert.Null(Record.Exception(() => inUse = _share.IsForeignAccessInUse(256)));
        Assert.False(inUse);
        Assert.Null(Record.Exception(() => ended = _share.EndForeignAccess(256)));
        Assert.True(ended);
    }

    [Fact]
    public void A_share_of_a_destroyed_domain_writes_no_frame_the_domain_no_longer_owns()
    {
        // grant_table_destroy frees the shared frames; a kernel whose domain is gone cannot write its table. Here the
        // freed table frame is handed to another owner; granting through the stale share must not write into it, and
        // returns false (IGrantShare.TryGrantForeignAccess).
        MachineFrameNumber table = _front.Grant.GetSharedFrame(0);
        _m.Kill(_front);
        MachineFrameNumber reused = default;
        for (int i = 0; i < 1000 && reused != table; i++)
        {
            reused = _m.Memory.AllocateContiguous(new FrameOwner(9), 1);
        }

        Assert.Equal(table, reused);
        bool granted = false;
        _ = Record.Exception(() => granted = _share.TryGrantForeignAccess(2, 5, false, out _));
        Assert.True(_m.Memory.GetFrame(reused).IndexOfAnyExcept((byte)0) < 0, "the stale share wrote a grant entry into another owner's frame");
        Assert.False(granted);
    }

    [Fact]
    public void A_client_over_a_domain_of_another_host_is_refused_and_writes_no_frame_of_this_machine()
    {
        // The share writes the domain's table frames as its kernel does, by frame number in the host's memory. A domain
        // of another host (another machine's memory) made with the same steps has the same table frame numbers as
        // _front here: a share of it through this host would write _front's table. Every host method refuses another
        // host's domain with ArgumentException (GrantTableHost's remarks); so do the clients, when they are made.
        using var other = new TestMachine();
        TestDomain foreign = other.AddDomain(1);
        MachineFrameNumber table = _front.Grant.GetSharedFrame(0);
        Assert.Equal(table, foreign.Grant.GetSharedFrame(0)); // precondition: the same number on both machines
        byte[] before = _m.Memory.GetFrame(table).ToArray();

        Exception? shareRefused = Record.Exception(() =>
        {
            var share = new InProcessGrantShare(_m.Host, foreign.Grant);
            share.TryGrantForeignAccess(2, 5, false, out _);
        });
        Exception? mapperRefused = Record.Exception(() => new InProcessGrantMapper(_m.Host, foreign.Grant, new GuestFrameNumber(0x1000), 2));

        Assert.True(_m.Memory.GetFrame(table).SequenceEqual(before), "a share of another host's domain wrote this machine's d1 table frame");
        Assert.IsType<ArgumentException>(shareRefused);
        Assert.IsType<ArgumentException>(mapperRefused);
    }

    [Fact]
    public void Under_v2_a_failed_end_of_access_has_already_invalidated_the_entry_as_in_Linux()
    {
        // Linux gnttab_end_foreign_access_ref_v2 clears hdr.flags first, then reads the status: when the grantee still
        // maps it the call fails, but the entry is gone (the pin keeps the mapping, _set_status_v2 skips the checks
        // while pinned). Once unmapped, the grantee cannot map it again (IGrantShare.EndForeignAccess). Under v1 a grant
        // still in use stays valid.
        var v = new GnttabSetVersion { Version = 2 };
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));
        Assert.True(_share.TryGrantForeignAccess(2, 5, false, out uint gref));
        var mapper = new InProcessGrantMapper(_m.Host, _back.Grant, new GuestFrameNumber(0x1000), 2);
        Assert.Equal(GrantStatus.Okay, mapper.TryMap(1, gref, false, out GrantMapping first));
        Assert.False(_share.EndForeignAccess(gref));
        Assert.Equal(GrantStatus.Okay, mapper.TryMap(1, gref, false, out GrantMapping second)); // pinned: no check
        Assert.Equal(GrantStatus.Okay, mapper.Unmap(first));
        Assert.Equal(GrantStatus.Okay, mapper.Unmap(second));
        Assert.Equal(GrantStatus.GeneralError, mapper.TryMap(1, gref, false, out _));
        Assert.True(_share.EndForeignAccess(gref));
    }

    [Fact]
    public void Unmapping_another_mappers_mapping_is_refused_without_an_exception()
    {
        // gntdev_ioctl_unmap_grant_ref unmaps a mapping of this file only (-ENOENT otherwise); IGrantMapper.Unmap refuses
        // a mapping from another mapper's window of the same domain with a status, and that mapping stays.
        var a = new InProcessGrantMapper(_m.Host, _back.Grant, new GuestFrameNumber(0x1000), 2);
        var b = new InProcessGrantMapper(_m.Host, _back.Grant, new GuestFrameNumber(0x2000), 2);
        Assert.True(_share.TryGrantForeignAccess(2, 5, false, out uint gref));
        Assert.Equal(GrantStatus.Okay, a.TryMap(1, gref, false, out GrantMapping mapping));

        GrantStatus status = GrantStatus.Okay;
        Assert.Null(Record.Exception(() => status = b.Unmap(mapping)));
        Assert.NotEqual(GrantStatus.Okay, status);
        Assert.True(_back.Ept.TryLookup(new GuestFrameNumber(0x1000), out _, out _));
        Assert.Equal(GrantStatus.Okay, a.Unmap(mapping));
    }

    [Fact]
    public void The_page_of_a_mapping_this_mapper_does_not_hold_is_refused()
    {
        // IGrantMapper.GetPage takes a live mapping of this mapper. Another mapper's mapping (its window, or another
        // domain's address space), one already unmapped, or one whose handle is not the one its slot holds names no
        // page of this mapper: refused with ArgumentException, never a page of the domain's own memory at that address.
        var a = new InProcessGrantMapper(_m.Host, _back.Grant, new GuestFrameNumber(0x1000), 2);
        var b = new InProcessGrantMapper(_m.Host, _back.Grant, new GuestFrameNumber(0x2000), 2);
        TestDomain third = _m.AddDomain(3);
        var c = new InProcessGrantMapper(_m.Host, third.Grant, new GuestFrameNumber(0x10), 2);
        Assert.True(_share.TryGrantForeignAccess(2, 5, false, out uint gref));
        Assert.Equal(GrantStatus.Okay, a.TryMap(1, gref, false, out GrantMapping mapping));

        Assert.Throws<ArgumentException>(() => b.GetPage(mapping));
        Assert.Throws<ArgumentException>(() => c.GetPage(mapping));

        // A mapping whose address lies in the domain's RAM (gfn 5 is populated) names no slot of any window.
        Assert.Throws<ArgumentException>(() => a.GetPage(mapping with { Address = 5UL << 12 }));
        Assert.Throws<ArgumentException>(() => a.GetPage(mapping with { Handle = mapping.Handle + 1 }));

        Assert.Equal(4096, a.GetPage(mapping).Length);
        Assert.Equal(GrantStatus.Okay, a.Unmap(mapping));
        Assert.Throws<ArgumentException>(() => a.GetPage(mapping));
    }

    [Fact]
    public void A_mapping_of_a_domain_that_died_is_no_live_mapping_of_its_mapper()
    {
        // DestroyDomain released every mapping of the backend, then its EPT was disposed (the order the host follows).
        // A mapping the mapper made before names no live mapping: GetPage refuses it with ArgumentException
        // (IGrantMapper.GetPage), Unmap and TryMap answer a status; none throws anything else.
        var mapper = new InProcessGrantMapper(_m.Host, _back.Grant, new GuestFrameNumber(0x1000), 2);
        Assert.True(_share.TryGrantForeignAccess(2, 5, false, out uint gref));
        Assert.Equal(GrantStatus.Okay, mapper.TryMap(1, gref, false, out GrantMapping mapping));
        _m.Kill(_back);

        Assert.Throws<ArgumentException>(() => mapper.GetPage(mapping));
        GrantStatus unmap = GrantStatus.Okay, map = GrantStatus.Okay;
        Assert.Null(Record.Exception(() => unmap = mapper.Unmap(mapping)));
        Assert.NotEqual(GrantStatus.Okay, unmap);
        Assert.Null(Record.Exception(() => map = mapper.TryMap(1, gref, false, out _)));
        Assert.Equal(GrantStatus.BadDomain, map);
        Assert.False(_share.IsForeignAccessInUse(gref));
    }

    [Fact]
    public void A_reference_ended_twice_at_once_is_freed_once()
    {
        // Two threads end the same grant at once (a kernel bug, as in Linux): one of them ends it, the other finds it
        // ended (ArgumentException, as a second end after the first returned). The reference goes back to the free
        // references once: two grants made after never share it.
        using var start = new Barrier(2);
        for (int round = 0; round < 2000; round++)
        {
            Assert.True(_share.TryGrantForeignAccess(2, 5, false, out uint gref));
            int ended = 0;
            void End()
            {
                start.SignalAndWait();
                try
                {
                    if (_share.EndForeignAccess(gref))
                    {
                        Interlocked.Increment(ref ended);
                    }
                }
                catch (ArgumentException)
                {
                }
            }

            var other = new Thread(End);
            other.Start();
            End();
            other.Join();
            Assert.Equal(1, ended);
            Assert.True(_share.TryGrantForeignAccess(2, 5, false, out uint a));
            Assert.True(_share.TryGrantForeignAccess(2, 6, false, out uint b));
            Assert.NotEqual(a, b);
            Assert.True(_share.EndForeignAccess(a));
            Assert.True(_share.EndForeignAccess(b));
        }
    }

    [Theory]
    [InlineData(0UL)]
    [InlineData(1UL << 52)]
    [InlineData((1UL << 36) - 1)]
    public void A_mapper_whose_window_holds_a_frame_no_unmap_can_name_is_refused(ulong window)
    {
        // unmap_common undoes a host mapping only for a non-zero host_addr: a mapping at guest-physical address 0 (or
        // at an address that wraps to 0, or past the 48-bit guest-physical space) can never be unmapped through the
        // mapper. A window holding such a frame is refused when the mapper is made; any other mapping Unmap says it
        // unmapped has left the EPT, its pin and its handle.
        InProcessGrantMapper? mapper = null;
        Exception? refused = Record.Exception(() => mapper = new InProcessGrantMapper(_m.Host, _back.Grant, new GuestFrameNumber(window), 2));
        if (refused is not null)
        {
            Assert.IsType<ArgumentOutOfRangeException>(refused);
            return;
        }

        Assert.True(_share.TryGrantForeignAccess(2, 5, false, out uint gref));
        for (int i = 0; i < 2; i++)
        {
            if (mapper!.TryMap(1, gref, false, out GrantMapping mapping) == GrantStatus.Okay &&
                mapper.Unmap(mapping) == GrantStatus.Okay)
            {
                Assert.False(_back.Ept.TryLookup(new GuestFrameNumber(mapping.Address >> 12), out _, out _));
                Assert.Equal(0, _back.Grant.MappingCount);
                Assert.False(_share.IsForeignAccessInUse(gref));
            }
        }

        Assert.Equal(0, _back.Grant.MappingCount);
    }

    [Fact]
    public void References_ended_past_the_table_are_granted_again_once_the_table_grows()
    {
        // A switch to v2 (256 entries per frame) leaves references 256-511 of a full one-frame v1 table past the table.
        // Ended there, they are free references (IGrantShare); once the domain grows its table back to 512 entries
        // (setup_table with two frames), every reference 8-511 can be granted again, none lost.
        // Every reference of the first frame (the share would grow the table past it: ClientGrowthTests).
        int fullTable = _front.Grant.EntryCount;
        Assert.Equal(512, fullTable);
        for (int i = 8; i < fullTable; i++)
        {
            Assert.True(_share.TryGrantForeignAccess(2, 5, false, out _));
        }

        Assert.Equal(fullTable, _front.Grant.EntryCount);
        var v = new GnttabSetVersion { Version = 2 };
        Assert.Equal(0, _m.Host.SetVersion(_front.Grant, ref v));
        Assert.True(_front.Grant.EntryCount < fullTable);
        for (uint r = 8; r < (uint)fullTable; r++)
        {
            Assert.True(_share.EndForeignAccess(r));
        }

        Assert.True(_share.TryGrantForeignAccess(2, 5, false, out uint first)); // pops past the table's end first
        Assert.True(first < (uint)_front.Grant.EntryCount);
        Assert.True(_share.EndForeignAccess(first));

        Span<ulong> frames = stackalloc ulong[8];
        int needed = (fullTable + 255) / 256;
        Assert.Equal(GrantStatus.Okay, _m.Host.SetupTable(_front.Grant, false, 0x7FF0, (uint)needed, frames));
        Assert.True(_front.Grant.EntryCount >= fullTable);

        var refs = new HashSet<uint>();
        while (refs.Count < fullTable - 8 && _share.TryGrantForeignAccess(2, 5, false, out uint r))
        {
            Assert.True(refs.Add(r));
        }

        Assert.Equal(fullTable - 8, refs.Count);
    }

    [Fact]
    public void A_read_only_mapping_gives_no_writable_view_even_when_the_caller_says_it_is_writable()
    {
        // Linux's gntdev maps a read-only grant only into a PROT_READ mapping, so a backend's stray write faults instead
        // of reaching the granter's page. IGrantMapper.GetPage (a writable span) refuses a mapping the mapper made
        // read-only, whatever the caller's copy of GrantMapping.ReadOnly says; GetReadOnlyPage serves both kinds.
        _front.RamPage(5)[0] = 0x5A;
        uint ro = Grant(5, readOnly: true), rw = Grant(6, readOnly: false);
        var mapper = new InProcessGrantMapper(_m.Host, _back.Grant, new GuestFrameNumber(0x1000), 2);
        Assert.Equal(GrantStatus.Okay, mapper.TryMap(1, ro, readOnly: true, out GrantMapping readOnly));
        Assert.Equal(GrantStatus.Okay, mapper.TryMap(1, rw, readOnly: false, out GrantMapping writable));

        Assert.Throws<InvalidOperationException>(() => mapper.GetPage(readOnly));
        Assert.Throws<InvalidOperationException>(() => mapper.GetPage(readOnly with { ReadOnly = false }));
        Assert.Equal(0x5A, mapper.GetReadOnlyPage(readOnly)[0]);
        Assert.Equal(4096, mapper.GetReadOnlyPage(writable).Length);
        mapper.GetPage(writable)[0] = 0xA5;
        Assert.Equal(0xA5, _front.RamPage(6)[0]);
        Assert.Throws<ArgumentException>(() => mapper.GetReadOnlyPage(readOnly with { Handle = readOnly.Handle + 1 }));

        Assert.Equal(GrantStatus.Okay, mapper.Unmap(readOnly));
        Assert.Throws<ArgumentException>(() => mapper.GetReadOnlyPage(readOnly));
        Assert.Equal(GrantStatus.Okay, mapper.Unmap(writable));
    }

    private uint Grant(int gfn, bool readOnly)
    {
        Assert.True(_share.TryGrantForeignAccess(2, (ulong)gfn, readOnly, out uint gref));
        return gref;
    }
}
