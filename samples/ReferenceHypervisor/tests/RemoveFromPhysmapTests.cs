using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using VmmKit.Ept;
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
}
