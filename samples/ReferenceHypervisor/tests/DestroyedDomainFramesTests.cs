using System.Runtime.InteropServices;
using VmmKit.Ept;
using VmmKit.GrantTable;
using VmmKit.Hypercall;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// A destroyed domain whose frames another domain still maps by grant (src/Core/Domain.cs, Dispose): Xen frees such a
/// page at its last <c>put_page</c>, and the domain stays a zombie, its id taken, until its last page is gone
/// (<c>free_domheap_pages</c> drops the domain's reference when <c>tot_pages</c> reaches 0).
/// </summary>
public sealed class DestroyedDomainFramesTests : IDisposable
{
    private readonly Machine _machine = new(64 << 20, ProcessorProviders.CreateDefault(), MachineMemoryBacking.Anonymous, inProcessBackend: false);
    private readonly Domain _dom0;
    private readonly Domain _guest;

    public DestroyedDomainFramesTests()
    {
        _dom0 = Create(0, privileged: true);
        _guest = Create(2, privileged: false);
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

    [Fact]
    public void A_frame_granted_to_dom0_stays_with_its_contents_until_dom0_unmaps_it_and_the_id_stays_taken()
    {
        Assert.True(_guest.Ept.TryLookup(new GuestFrameNumber(3), out var frame, out _));
        Assert.True(_guest.Physical.TryWrite(new GuestPhysicalAddress(3 * 4096), 0xC0FFEEu));
        // The guest grants gfn 3 to domain 0 in entry 8 of its v1 table; Dom0 maps it at its gfn 10.
        MemoryMarshal.Write(_machine.Memory.GetFrame(_guest.Grants.GetSharedFrame(0))[(8 * GrantEntryV1.Size)..],
            new GrantEntryV1 { Flags = (ushort)GrantEntryFlags.PermitAccess, DomId = 0, Frame = 3 });
        var map = new GnttabMapGrantRef { HostAddr = 10 * 4096, Flags = (uint)GrantMapFlags.HostMap, Ref = 8, Dom = 2 };
        _machine.Grants.MapGrantRef(_dom0.Grants, ref map);
        Assert.Equal(0, map.Status);

        _guest.IsDying = true;
        _machine.RemoveDomain(_guest);                                      // XEN_DOMCTL_destroydomain's last step

        // The mapped frame is not back in the pool: still the dead domain's, pending its last reference.
        Assert.True(_machine.Memory.TryGetOwner(frame, out FrameOwner owner));
        Assert.Equal(2, owner.DomainId);
        Assert.True(_machine.Frames.IsFreePending(frame));
        Assert.True(_dom0.Physical.TryRead(new GuestPhysicalAddress(10 * 4096), out uint seen));
        Assert.Equal(0xC0FFEEu, seen);

        // Its id stays taken (a zombie): a new domain cannot have it, so its pages are never charged to another domain.
        Assert.True(_machine.IsDomainIdTaken(2));
        Assert.NotEqual((ushort)2, _machine.AllocateDomainId());

        // A new domain's pages never reuse the mapped frame.
        Domain next = Create(3, privileged: false);
        for (ulong gfn = 0; gfn < 4; gfn++)
        {
            Assert.True(next.Ept.TryLookup(new GuestFrameNumber(gfn), out var f, out _));
            Assert.NotEqual(frame, f);
        }

        var unmap = new GnttabUnmapGrantRef { HostAddr = 10 * 4096, Handle = map.Handle };
        _machine.Grants.UnmapGrantRef(_dom0.Grants, ref unmap);
        Assert.Equal(0, unmap.Status);
        Assert.False(_machine.Memory.TryGetOwner(frame, out _));            // freed with the last reference
        Assert.Equal(0ul, _machine.Memory.FramesOwnedBy(new FrameOwner(2)));
        Assert.False(_machine.IsDomainIdTaken(2));
    }
}
