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
        Assert.Equal(0x5A, page[100]);
        page[100] = 0xA5;                                             // shared, not copied: the granter sees it
        Assert.Equal(0xA5, channel.Dom0Memory(grantedGfn << 12, 4096)[100]);

        Assert.Equal(GrantStatus.Okay, gnttab.Unmap(mapping));
        Assert.Equal(GrantStatus.BadHandle, gnttab.Unmap(mapping));
        Assert.NotEqual(GrantStatus.Okay, gnttab.TryMap(0, gref + 1, readOnly: true, out _));   // never granted
        Assert.Equal(0, privcmd.Unmap([(ulong)table[0]]));
    }
}
