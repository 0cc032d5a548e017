using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using VmmKit.Dom0.Xen.Abi;
using VmmKit.Ept;
using VmmKit.GrantTable;
using VmmKit.Hypercall;
using VmmKit.ReferenceHypervisor.Hypercalls;
using VmmKit.TestSupport;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>XENMEM_remove_from_physmap (src/Hypercalls/MemoryOpHypercall.cs) against Xen's memory.c rules.</summary>
public sealed class RemoveFromPhysmapTests : IDisposable
{
    private readonly Machine _machine = new(64 << 20, ProcessorProviders.CreateDefault(), MachineMemoryBacking.Anonymous, inProcessBackend: false);
    private readonly GuestPage _memory = new();
    private readonly VirtualCpu _dom0;
    private readonly VirtualCpu _guest;
    private readonly Domain _other;

    public RemoveFromPhysmapTests()
    {
        _dom0 = Boot(0, privileged: true);
        _guest = Boot(1, privileged: false);
        _other = new Domain(_machine, 2, "other", 1, privileged: false, upcall: null);
        _machine.AddDomain(_other);
        _other.SetMaxPages(16);
        Assert.Equal(0, _other.Populate(3));
    }

    public void Dispose() => _machine.Dispose();

    private VirtualCpu Boot(ushort id, bool privileged)
    {
        var d = new Domain(_machine, id, $"d{id}", 1, privileged, upcall: null);
        _machine.AddDomain(d);
        d.SetMaxPages(16);
        for (ulong gfn = 0; gfn < 4; gfn++)
            Assert.Equal(0, d.Populate(gfn));
        Assert.Equal(0, d.InitialiseBootVcpu(0x1000, 0));
        return d.Vcpus[0];
    }

    private long Remove(VirtualCpu caller, ushort domid, ulong gpfn, ulong cmdHigh = 0)
    {
        MemoryMarshal.Write(_memory.Bytes, new XenRemoveFromPhysmap { Domid = domid, Gpfn = gpfn });
        return Call(caller, XenRemoveFromPhysmap.SubOp | (cmdHigh << 6));
    }

    private long Add(VirtualCpu caller, XenMapSpace space, ulong idx, ulong gpfn)
    {
        MemoryMarshal.Write(_memory.Bytes, new XenAddToPhysmap { Domid = DomainId.Self, Space = (uint)space, Idx = idx, Gpfn = gpfn });
        return Call(caller, (uint)MemoryOp.AddToPhysmap);
    }

    private long Call(VirtualCpu caller, ulong cmd)
    {
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.MemoryOp, Rdi = cmd, Rsi = 0 };
        _machine.Hypercalls.Dispatch(caller, ref regs, GuestX86Mode.Long64, 0, _memory);
        return (long)regs.Rax;
    }

    private static bool Mapped(Domain d, ulong gfn) => d.Ept.TryLookup(new GuestFrameNumber(gfn), out _, out _);

    [Fact]
    public void The_struct_matches_xen_memory_h()
    {
        var v = XenAbiLayout.Evaluate(["xen/xen.h", "xen/memory.h"],
            ["XENMEM_remove_from_physmap", "sizeof(struct xen_remove_from_physmap)", "offsetof(struct xen_remove_from_physmap, gpfn)"]);
        Assert.Equal(new long[] { XenRemoveFromPhysmap.SubOp, Unsafe.SizeOf<XenRemoveFromPhysmap>(), Marshal.OffsetOf<XenRemoveFromPhysmap>("Gpfn") }, v);
        Assert.Equal((8, 4), (Unsafe.SizeOf<CompatXenRemoveFromPhysmap>(), (int)Marshal.OffsetOf<CompatXenRemoveFromPhysmap>("Gpfn")));
    }

    [Fact]
    public void Hostile_calls_get_xens_errno()
    {
        Assert.Equal(XenErrno.EPERM.Negated(), Remove(_guest, 2, 3));          // another domain, unprivileged
        Assert.True(Mapped(_other, 3));
        Assert.Equal(XenErrno.ESRCH.Negated(), Remove(_guest, 9, 3));
        Assert.Equal(XenErrno.EINVAL.Negated(), Remove(_guest, DomainId.Self, 1, cmdHigh: 1));    // a continuation
        Assert.Equal(XenErrno.ENOENT.Negated(), Remove(_guest, DomainId.Self, 9));                // not populated
        Assert.Equal(XenErrno.ENOENT.Negated(), Remove(_guest, DomainId.Self, ulong.MaxValue));
        Assert.Equal(XenErrno.EFAULT.Negated(), RemoveAt(4090));
    }

    private long RemoveAt(ulong address)
    {
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.MemoryOp, Rdi = XenRemoveFromPhysmap.SubOp, Rsi = address };
        _machine.Hypercalls.Dispatch(_guest, ref regs, GuestX86Mode.Long64, 0, _memory);
        return (long)regs.Rax;
    }

    [Fact]
    public void A_removed_ram_page_is_unpopulated_and_a_privileged_caller_may_remove_anothers()
    {
        Assert.Equal(0, Remove(_guest, DomainId.Self, 2));
        Assert.False(Mapped(_guest.Domain, 2));                              // an access now faults as on an unpopulated gfn
        Assert.Equal(XenErrno.ENOENT.Negated(), Remove(_guest, DomainId.Self, 2));
        Assert.Equal(0, Remove(_dom0, 2, 3));
        Assert.False(Mapped(_other, 3));
    }

    [Fact]
    public void Shared_info_and_grant_frames_removed_can_be_placed_elsewhere()
    {
        var d = _guest.Domain;
        Assert.Equal(0, Add(_guest, XenMapSpace.SharedInfo, 0, 5));
        Assert.Equal(0, Remove(_guest, DomainId.Self, 5));
        Assert.Null(d.SharedInfoGfn);
        Assert.False(Mapped(d, 5));
        Assert.Equal(0, Add(_guest, XenMapSpace.SharedInfo, 0, 6));
        Assert.True(d.Ept.TryLookup(new GuestFrameNumber(6), out var si, out _));
        Assert.Equal(d.SharedInfoFrame, si);

        Assert.Equal(0, Add(_guest, XenMapSpace.GrantTable, 0, 7));
        Assert.Equal(0, Remove(_guest, DomainId.Self, 7));
        Assert.False(Mapped(d, 7));
        Assert.Equal(0, Add(_guest, XenMapSpace.GrantTable, 0, 7));
        Assert.True(d.Ept.TryLookup(new GuestFrameNumber(7), out var gt, out _));
        Assert.Equal(d.Grants.GetSharedFrame(0), gt);
    }

    /// <summary>getdomaininfo's tot_pages of <paramref name="domid"/>, asked by Dom0.</summary>
    private ulong TotPages(ushort domid)
    {
        MemoryMarshal.Write(_memory.Bytes, new XenDomctl { Cmd = ToolsAbi.DomctlGetDomainInfo, InterfaceVersion = ToolsAbi.DomctlInterfaceVersion, Domain = domid });
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.Domctl, Rdi = 0 };
        _machine.Hypercalls.Dispatch(_dom0, ref regs, GuestX86Mode.Long64, 0, _memory);
        Assert.Equal(0ul, regs.Rax);
        var op = MemoryMarshal.Read<XenDomctl>(_memory.Bytes);
        Assert.Equal(domid, op.GetDomainInfo.Domain);
        return op.GetDomainInfo.TotPages;
    }

    [Fact]
    public void A_removed_ram_page_leaves_tot_pages_and_returns_to_the_host()
    {
        ulong before = TotPages(2);
        _other.SetMaxPages(1);                                              // gfn 3 is its one page
        Assert.Equal(XenErrno.ENOMEM.Negated(), _other.Populate(4));
        Assert.True(_other.Ept.TryLookup(new GuestFrameNumber(3), out var frame, out _));
        ulong free = _machine.Memory.FreeFrames;

        Assert.Equal(0, Remove(_dom0, 2, 3));
        Assert.Equal(before - 1, TotPages(2));                              // guest_remove_page: tot_pages down
        Assert.Equal(0ul, _other.PopulatedPages);
        Assert.False(_machine.Memory.TryGetOwner(frame, out _));            // back in the host allocator
        Assert.Equal(free + 1, _machine.Memory.FreeFrames);

        Assert.Equal(0, _other.Populate(4));                                // the page may be populated again under max_mem
        Assert.Equal(before, TotPages(2));
        Assert.True(_other.Physical.TryRead(new GuestPhysicalAddress(4 * 4096), out ulong fresh));
        Assert.Equal(0ul, fresh);
    }

    [Fact]
    public void A_guest_removing_its_own_page_is_uncharged_too()
    {
        ulong before = TotPages(1);
        Assert.Equal(0, Remove(_guest, DomainId.Self, 1));
        Assert.Equal(before - 1, TotPages(1));
    }

    [Fact]
    public void A_granted_and_mapped_page_stays_valid_until_its_last_mapping_goes()
    {
        var dom0 = _dom0.Domain;
        Assert.True(_other.Ept.TryLookup(new GuestFrameNumber(3), out var frame, out _));
        Assert.True(_other.Physical.TryWrite(new GuestPhysicalAddress(3 * 4096), 0xC0FFEEu));
        // The domain grants gfn 3 to domain 0 in entry 8 of its v1 table; Dom0 maps it at its gfn 10.
        MemoryMarshal.Write(_machine.Memory.GetFrame(_other.Grants.GetSharedFrame(0))[(8 * GrantEntryV1.Size)..],
            new GrantEntryV1 { Flags = (ushort)GrantEntryFlags.PermitAccess, DomId = 0, Frame = 3 });
        var map = new GnttabMapGrantRef { HostAddr = 10 * 4096, Flags = (uint)GrantMapFlags.HostMap, Ref = 8, Dom = 2 };
        _machine.Grants.MapGrantRef(dom0.Grants, ref map);
        Assert.Equal(0, map.Status);
        ulong before = TotPages(2);

        Assert.Equal(0, Remove(_dom0, 2, 3));
        Assert.False(Mapped(_other, 3));
        Assert.Equal(0ul, _other.PopulatedPages);
        Assert.True(_machine.Frames.IsFreePending(frame));                  // held by the grant mapping (Xen: the page's last put_page)
        Assert.Equal(0, _other.Populate(4));
        Assert.True(_other.Ept.TryLookup(new GuestFrameNumber(4), out var other, out _));
        Assert.NotEqual(frame, other);                                      // never handed out while mapped
        Assert.True(dom0.Physical.TryRead(new GuestPhysicalAddress(10 * 4096), out uint seen));
        Assert.Equal(0xC0FFEEu, seen);

        var unmap = new GnttabUnmapGrantRef { HostAddr = 10 * 4096, Handle = map.Handle };
        _machine.Grants.UnmapGrantRef(dom0.Grants, ref unmap);
        Assert.Equal(0, unmap.Status);
        Assert.False(_machine.Frames.IsFreePending(frame));
        Assert.False(_machine.Memory.TryGetOwner(frame, out _));            // freed with the last reference
        Assert.Equal(before, TotPages(2));                                  // one page removed, one populated
    }
}
