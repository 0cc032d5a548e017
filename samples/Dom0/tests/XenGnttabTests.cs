using VmmKit.Dom0.Xen;
using VmmKit.GrantTable;
using VmmKit.Hypercall;

namespace VmmKit.Dom0.Tests;

/// <summary>
/// The gntdev-like mapper of Dom0 (GNTTABOP_map_grant_ref as domain 0, the frame used in place through the shared
/// machine memory): domain 0 grants one of its own pages to itself, as a loop, and maps it.
/// </summary>
public sealed class XenGnttabTests
{
    [Fact]
    public void A_grant_maps_to_its_frame_in_the_shared_machine_memory_and_unmaps()
    {
        using var host = HostProcess.Start();
        using var channel = host.Connect();
        var privcmd = new Privcmd(channel);
        const ulong tableGfn = 3000, grantedGfn = 3001;
        const uint gref = 8;

        // The grant table's frame 0 placed at one of domain 0's pages (XENMAPSPACE_grant_table), found by MMAPBATCH.
        using (var b = privcmd.Buffers.Rent(32))
        {
            b.As<XenAddToPhysmap>() = new XenAddToPhysmap { Domid = DomainId.Self, Space = (uint)XenMapSpace.GrantTable, Idx = 0, Gpfn = tableGfn };
            Assert.Equal(0, privcmd.Hypercall(HypercallNumber.MemoryOp, (ulong)MemoryOp.AddToPhysmap, b.Address));
        }

        Span<long> table = stackalloc long[1];
        privcmd.MmapBatch(0, [tableGfn], table);
        Assert.True(table[0] > 0);
        channel.Dom0Memory(grantedGfn << 12, 4096).Fill(0x5A);
        System.Runtime.InteropServices.MemoryMarshal.Write(channel.Frame((ulong)table[0])[(int)(gref * 8)..],
            new GrantEntryV1 { Flags = (ushort)GrantEntryFlags.PermitAccess, DomId = 0, Frame = (uint)grantedGfn });

        var gnttab = new XenGnttab(privcmd);
        Assert.Equal(GrantStatus.Okay, gnttab.TryMap(0, gref, readOnly: false, out var mapping));
        Span<byte> page = gnttab.GetPage(mapping);
        Span<long> viaPrivcmd = stackalloc long[1];                    // a grant mapping is not Dom0's own page
        privcmd.MmapBatch(0, [XenGnttab.FirstSlot], viaPrivcmd);       // (xenmem_add_to_physmap_one: !p2m_is_ram)
        Assert.Equal(-22, viaPrivcmd[0]);
        Assert.Equal(0x5A, page[100]);
        page[100] = 0xA5;                                             // shared, not copied: the granter sees it
        Assert.Equal(0xA5, channel.Dom0Memory(grantedGfn << 12, 4096)[100]);

        // A read-only mapping gives only a read-only view, whatever the caller's copy of it says (gntdev: PROT_READ).
        Assert.Equal(GrantStatus.Okay, gnttab.TryMap(0, gref, readOnly: true, out var readOnly));
        Assert.Throws<InvalidOperationException>(() => gnttab.GetPage(readOnly with { ReadOnly = false }));
        Assert.Equal(0xA5, gnttab.GetReadOnlyPage(readOnly)[100]);
        Assert.Equal(GrantStatus.Okay, gnttab.Unmap(readOnly));

        Assert.Equal(GrantStatus.Okay, gnttab.Unmap(mapping));
        Assert.Equal(GrantStatus.BadHandle, gnttab.Unmap(mapping));
        Assert.Throws<ArgumentException>(() => gnttab.GetPage(mapping));   // no longer names the granted frame
        Assert.NotEqual(GrantStatus.Okay, gnttab.TryMap(0, gref + 1, readOnly: true, out _));   // never granted
        Assert.Equal(0, privcmd.Unmap([(ulong)table[0]]));
    }

    [Fact]
    public void A_Dom0_process_that_goes_leaves_no_grant_mapping_and_no_bound_port_behind()
    {
        using var host = HostProcess.Start();
        const ulong tableGfn = 3000, grantedGfn = 3001;
        const uint gref = 8;
        long tableFrame;
        uint loopA, loopB;
        using (var first = host.Connect())
        {
            var privcmd = new Privcmd(first);
            tableFrame = LoopGrant(privcmd, tableGfn, grantedGfn, gref);
            var gnttab = new XenGnttab(privcmd);
            Assert.Equal(GrantStatus.Okay, gnttab.TryMap(0, gref, readOnly: false, out _));
            Assert.Equal(GrantStatus.Okay, gnttab.TryMap(0, gref, readOnly: true, out _));
            Assert.Equal((ushort)(GrantEntryFlags.PermitAccess | GrantEntryFlags.Reading | GrantEntryFlags.Writing), EntryFlags(first, tableFrame, gref));
            var evtchn = new XenEvtchn(privcmd);
            loopA = evtchn.BindUnboundPort(0);
            loopB = evtchn.BindInterdomain(0, loopA);
        }   // the process goes without unmapping or closing anything (as a SIGKILL leaves it)

        using var second = ConnectWhenFree(host);
        var p2 = new Privcmd(second);
        // gntdev's release: the old mappings are gone, so the grant is no longer in use...
        Assert.Equal((ushort)GrantEntryFlags.PermitAccess, EntryFlags(second, tableFrame, gref));
        // ...and a fresh gntdev handle maps at its first slot (the old process's slot is free again).
        var again = new XenGnttab(p2);
        Assert.Equal(GrantStatus.Okay, again.TryMap(0, gref, readOnly: false, out var mapping));
        Assert.Equal(0x5A, again.GetPage(mapping)[7]);
        using (var b = p2.Buffers.Rent(16))
        {
            // The mapping sits at XenGnttab.FirstSlot: GNTTABOP_unmap_grant_ref of that address and handle succeeds.
            b.As<GnttabUnmapGrantRef>() = new GnttabUnmapGrantRef { HostAddr = XenGnttab.FirstSlot << 12, Handle = mapping.Handle };
            Assert.Equal(0, p2.Hypercall(HypercallNumber.GrantTableOp, (ulong)GrantTableOp.UnmapGrantRef, b.Address, 1));
            Assert.Equal(0, b.As<GnttabUnmapGrantRef>().Status);
        }

        // evtchn's release: the ports the process bound are closed (sending on a free port is -EINVAL).
        var evtchn2 = new XenEvtchn(p2);
        foreach (uint port in (uint[])[loopA, loopB])
        {
            var e = Assert.Throws<VmmKit.EventChannel.EventChannelException>(() => evtchn2.Notify(port));
            Assert.Equal(XenErrno.EINVAL, e.Errno);
        }

        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!host.Log.Contains("released 1 foreign frame(s), 2 grant mapping(s), closed its ports (rc 0)", StringComparison.Ordinal) && clock.Elapsed < TimeSpan.FromSeconds(10))
            Thread.Sleep(50);   // the hypervisor's stderr arrives asynchronously
        Assert.True(host.Log.Contains("released 1 foreign frame(s), 2 grant mapping(s), closed its ports (rc 0)", StringComparison.Ordinal), host.Log);
    }

    /// <summary>
    /// Backend threads map and unmap grants through one handle at once, as Dom0's console and block backends do. The
    /// hypervisor hands a handle it has just freed to the next map (its maptrack free list), so one thread's map can get
    /// the handle of the other thread's unmap before that unmap has updated the handle's records: each thread's own
    /// mappings must stay usable (GetPage) and unmappable, and none may be left in the hypervisor.
    /// </summary>
    [Fact]
    public void Threads_mapping_and_unmapping_through_one_handle_never_lose_a_mapping()
    {
        using var host = HostProcess.Start();
        using var channel = host.Connect();
        var privcmd = new Privcmd(channel);
        long tableFrame = LoopGrant(privcmd, 3000, 3001, 8);
        var gnttab = new XenGnttab(privcmd);
        var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var threads = new Thread[8];   // more threads than cores: one is often preempted between its reply and its records
        for (int t = 0; t < threads.Length; t++)
        {
            int id = t;
            threads[t] = new Thread(() =>
            {
                for (int i = 0; i < 4000 && failures.IsEmpty; i++)
                {
                    if (gnttab.TryMap(0, 8, readOnly: id % 2 == 1, out var mapping) is var s && s != GrantStatus.Okay)
                    {
                        failures.Enqueue($"thread {id}: map {i}: {s}");
                        return;
                    }

                    try
                    {
                        _ = gnttab.GetReadOnlyPage(mapping)[0];
                    }
                    catch (ArgumentException)
                    {
                        failures.Enqueue($"thread {id}: mapping {i} (handle {mapping.Handle}) no longer live before its unmap");
                    }

                    if (gnttab.Unmap(mapping) is var u && u != GrantStatus.Okay)
                        failures.Enqueue($"thread {id}: unmap {i} (handle {mapping.Handle}): {u}");
                }
            });
            threads[t].Start();
        }

        foreach (var t in threads)
            t.Join();
        Assert.Empty(failures);
        Assert.Equal((ushort)GrantEntryFlags.PermitAccess, EntryFlags(channel, tableFrame, 8));   // nothing left mapped
    }

    /// <summary>Domain 0 grants its own page <paramref name="grantedGfn"/> to itself as <paramref name="gref"/>; returns the table's frame.</summary>
    private static long LoopGrant(Privcmd privcmd, ulong tableGfn, ulong grantedGfn, uint gref)
    {
        using (var b = privcmd.Buffers.Rent(32))
        {
            b.As<XenAddToPhysmap>() = new XenAddToPhysmap { Domid = DomainId.Self, Space = (uint)XenMapSpace.GrantTable, Idx = 0, Gpfn = tableGfn };
            Assert.Equal(0, privcmd.Hypercall(HypercallNumber.MemoryOp, (ulong)MemoryOp.AddToPhysmap, b.Address));
        }

        Span<long> table = stackalloc long[1];
        privcmd.MmapBatch(0, [tableGfn], table);
        Assert.True(table[0] > 0);
        privcmd.Channel.Dom0Memory(grantedGfn << 12, 4096).Fill(0x5A);
        System.Runtime.InteropServices.MemoryMarshal.Write(privcmd.Channel.Frame((ulong)table[0])[(int)(gref * 8)..],
            new GrantEntryV1 { Flags = (ushort)GrantEntryFlags.PermitAccess, DomId = 0, Frame = (uint)grantedGfn });
        return table[0];
    }

    private static ushort EntryFlags(HypervisorChannel channel, long tableFrame, uint gref) =>
        System.Runtime.InteropServices.MemoryMarshal.Read<GrantEntryV1>(channel.Frame((ulong)tableFrame)[(int)(gref * 8)..]).Flags;

    /// <summary>Connects once the hypervisor has let the previous Dom0 go (it refuses a second one meanwhile).</summary>
    internal static HypervisorChannel ConnectWhenFree(HostProcess host)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            try
            {
                return host.Connect();
            }
            catch (IOException) when (clock.Elapsed < TimeSpan.FromSeconds(30))
            {
                Thread.Sleep(50);
            }
        }
    }
}
