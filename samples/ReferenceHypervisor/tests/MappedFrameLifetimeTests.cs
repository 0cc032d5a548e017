using System.Runtime.InteropServices;
using VmmKit.Dom0.Xen.Abi;
using VmmKit.Ept;
using VmmKit.GrantTable;
using VmmKit.Hypercall;
using VmmKit.ReferenceHypervisor.Host;
using VmmKit.ReferenceHypervisor.Hypercalls;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// A guest frame that others map, by grant (VmmKit.GrantTable's FrameReferences) or by Dom0's foreign mappings
/// (src/Host/ForeignMappings.cs), lives until the last mapping goes, whichever kind goes last, when its domain removes
/// it or is destroyed (Xen: every mapping holds a page reference, and the page is freed at the last <c>put_page</c>).
/// A destroyed domain with such frames stays a zombie, its id taken, until its last page is gone
/// (<c>free_domheap_pages</c> drops the domain's reference when <c>tot_pages</c> reaches 0).
/// </summary>
public sealed class MappedFrameLifetimeTests : IDisposable
{
    private const ushort GuestId = 2;
    private readonly Machine _machine = new(64 << 20, ProcessorProviders.CreateDefault(), MachineMemoryBacking.Anonymous, inProcessBackend: false);
    private readonly GuestPage _page = new();
    private readonly Domain _dom0;
    private readonly Domain _guest;
    private readonly ForeignMappings _foreign;
    private readonly MachineFrameNumber _frame;

    public MappedFrameLifetimeTests()
    {
        _dom0 = Create(0, privileged: true);
        Assert.Equal(0, _dom0.InitialiseBootVcpu(0x1000, 0));
        _guest = Create(GuestId, privileged: false);
        _foreign = new ForeignMappings(_machine.Frames);
        _machine.Foreign = _foreign;
        Assert.True(_guest.Ept.TryLookup(new GuestFrameNumber(3), out _frame, out _));
        Assert.True(_guest.Physical.TryWrite(new GuestPhysicalAddress(3 * 4096), 0xC0FFEEu));
    }

    public void Dispose() => _machine.Dispose();

    private Domain Create(ushort id, bool privileged)
    {
        var d = new Domain(_machine, id, $"d{id}", 1, privileged, upcall: null);
        _machine.AddDomain(d);
        d.SetMaxPages(16);
        for (ulong gfn = 0; gfn < 4; gfn++)
            Assert.Equal(0, d.Populate(gfn));
        return d;
    }

    private long Hypercall(HypercallNumber op, ulong a0)
    {
        var regs = new HypercallRegisters { Rax = (ulong)op, Rdi = a0, Rsi = 0 };
        _machine.Hypercalls.Dispatch(_dom0.Vcpus[0], ref regs, GuestX86Mode.Long64, 0, _page);
        return (long)regs.Rax;
    }

    // The guest grants gfn 3 to domain 0 in entry 8 of its v1 table; Dom0 maps it at its gfn 10.
    private uint GrantMapByDom0()
    {
        MemoryMarshal.Write(_machine.Memory.GetFrame(_guest.Grants.GetSharedFrame(0))[(8 * GrantEntryV1.Size)..],
            new GrantEntryV1 { Flags = (ushort)GrantEntryFlags.PermitAccess, DomId = 0, Frame = 3 });
        var map = new GnttabMapGrantRef { HostAddr = 10 * 4096, Flags = (uint)GrantMapFlags.HostMap, Ref = 8, Dom = GuestId };
        _machine.Grants.MapGrantRef(_dom0.Grants, ref map);
        Assert.Equal(0, map.Status);
        return map.Handle;
    }

    private void GrantUnmapByDom0(uint handle)
    {
        var unmap = new GnttabUnmapGrantRef { HostAddr = 10 * 4096, Handle = handle };
        _machine.Grants.UnmapGrantRef(_dom0.Grants, ref unmap);
        Assert.Equal(0, unmap.Status);
    }

    private void DestroyGuest()
    {
        MemoryMarshal.Write(_page.Bytes, new XenDomctl { Cmd = ToolsAbi.DomctlDestroyDomain, InterfaceVersion = ToolsAbi.DomctlInterfaceVersion, Domain = GuestId });
        Assert.Equal(0, Hypercall(HypercallNumber.Domctl, 0));
        Assert.Null(_machine.FindDomain(GuestId));
    }

    private void RemoveFromGuestPhysmap()
    {
        MemoryMarshal.Write(_page.Bytes, new XenRemoveFromPhysmap { Domid = GuestId, Gpfn = 3 });
        Assert.Equal(0, Hypercall(HypercallNumber.MemoryOp, XenRemoveFromPhysmap.SubOp));
    }

    private bool StillTheGuests() =>
        _machine.Memory.TryGetOwner(_frame, out FrameOwner owner) && owner.DomainId == GuestId &&
        MemoryMarshal.Read<uint>(_machine.Memory.GetFrame(_frame)) == 0xC0FFEEu;

    [Fact]
    public void A_destroyed_domains_frame_granted_to_dom0_stays_until_dom0_unmaps_it_and_the_id_stays_taken()
    {
        uint handle = GrantMapByDom0();
        DestroyGuest();

        Assert.True(StillTheGuests());
        Assert.True(_machine.Frames.IsFreePending(_frame));
        Assert.True(_dom0.Physical.TryRead(new GuestPhysicalAddress(10 * 4096), out uint seen));
        Assert.Equal(0xC0FFEEu, seen);

        // A zombie: its id stays taken, so no new domain is charged for its frame.
        Assert.True(_machine.IsDomainIdTaken(GuestId));
        Assert.NotEqual((ushort)GuestId, _machine.AllocateDomainId());
        Domain next = Create(3, privileged: false);
        for (ulong gfn = 0; gfn < 4; gfn++)
        {
            Assert.True(next.Ept.TryLookup(new GuestFrameNumber(gfn), out var f, out _));
            Assert.NotEqual(_frame, f);
        }

        GrantUnmapByDom0(handle);
        Assert.False(_machine.Memory.TryGetOwner(_frame, out _));           // freed with the last reference
        Assert.Equal(0ul, _machine.Memory.FramesOwnedBy(new FrameOwner(GuestId)));
        Assert.False(_machine.IsDomainIdTaken(GuestId));
    }

    [Fact]
    public void A_destroyed_domains_frame_mapped_both_ways_goes_only_with_the_grant_mapping_when_that_goes_last()
    {
        uint handle = GrantMapByDom0();
        Assert.True(_foreign.TryTake(_frame, _guest.Owner));                 // Dom0's MMAPBATCH of the same page
        DestroyGuest();

        Assert.True(_foreign.Release(_frame));                               // privcmd's munmap first
        Assert.True(StillTheGuests());                                       // the grant mapping still holds it

        GrantUnmapByDom0(handle);
        Assert.False(_machine.Memory.TryGetOwner(_frame, out _));
    }

    [Fact]
    public void A_removed_page_mapped_both_ways_goes_only_with_the_foreign_mapping_when_that_goes_last()
    {
        uint handle = GrantMapByDom0();
        Assert.True(_foreign.TryTake(_frame, _guest.Owner));
        RemoveFromGuestPhysmap();
        Assert.True(StillTheGuests());

        GrantUnmapByDom0(handle);
        Assert.True(StillTheGuests());                                       // Dom0's foreign mapping still holds it

        Assert.True(_foreign.Release(_frame));
        Assert.False(_machine.Memory.TryGetOwner(_frame, out _));
    }
}
