using System.Runtime.InteropServices;
using VmmKit.Ept;
using VmmKit.GrantTable;
using VmmKit.Hypercall;
using VmmKit.Vmx;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// Which grant-table calls flush the caller's vCPUs' translations. Xen flushes when the p2m changes
/// (<c>ept_sync_domain</c> after a grant mapping replaced an entry; <c>gnttab_flush_tlb</c> before an unmapped page
/// goes): a call that changes no EPT entry, as <c>GNTTABOP_copy</c>, must not make every other vCPU of the guest leave
/// guest execution (on the threaded scheduler, <see cref="VirtualCpu.InvalidateEpt"/> waits for each to exit).
/// </summary>
public sealed class GrantOpFlushTests : IDisposable
{
    private const ushort GranterId = 2;
    private readonly CountingProvider _provider = new();
    private readonly Machine _machine;
    private readonly GuestPage _page = new();
    private readonly Domain _backend;
    private readonly Domain _granter;

    public GrantOpFlushTests()
    {
        _machine = new Machine(64 << 20, _provider, MachineMemoryBacking.Anonymous, inProcessBackend: false);
        _backend = Create(0, privileged: true, vcpus: 2);
        _granter = Create(GranterId, privileged: false, vcpus: 1);
        // The granter's v1 entry 8: the backend may write gfn 3.
        MemoryMarshal.Write(_machine.Memory.GetFrame(_granter.Grants.GetSharedFrame(0))[(8 * GrantEntryV1.Size)..],
            new GrantEntryV1 { Flags = (ushort)GrantEntryFlags.PermitAccess, DomId = 0, Frame = 3 });
    }

    public void Dispose() => _machine.Dispose();

    private Domain Create(ushort id, bool privileged, uint vcpus)
    {
        var d = new Domain(_machine, id, $"d{id}", vcpus, privileged, upcall: null);
        _machine.AddDomain(d);
        d.SetMaxPages(16);
        for (ulong gfn = 0; gfn < 4; gfn++)
            Assert.Equal(0, d.Populate(gfn));
        Assert.Equal(0, d.InitialiseBootVcpu(0x1000, 0));
        return d;
    }

    private long Call(GrantTableOp op, ulong count = 1)
    {
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.GrantTableOp, Rdi = (ulong)op, Rsi = 0, Rdx = count };
        _machine.Hypercalls.Dispatch(_backend.Vcpus[0], ref regs, GuestX86Mode.Long64, 0, _page);
        return (long)regs.Rax;
    }

    [Fact]
    public void A_copy_or_a_query_flushes_no_vcpu()
    {
        MemoryMarshal.Write(_page.Bytes, new GnttabCopy
        {
            Source = new GnttabCopyPtr { Gmfn = 1, DomId = DomainId.Self },
            Dest = new GnttabCopyPtr { Ref = 8, DomId = GranterId },
            Len = 4096,
            Flags = (ushort)GrantCopyFlags.DestGref,
        });
        long before = _provider.Invalidations;
        Assert.Equal(0, Call(GrantTableOp.Copy));
        Assert.Equal(0, MemoryMarshal.Read<GnttabCopy>(_page.Bytes).Status);

        MemoryMarshal.Write(_page.Bytes, new GnttabQuerySize { Dom = DomainId.Self });
        Assert.Equal(0, Call(GrantTableOp.QuerySize));

        Assert.Equal(before, _provider.Invalidations);
    }

    [Fact]
    public void A_mapping_over_a_ram_page_flushes_every_vcpu_of_the_grantee()
    {
        // gfn 2 held one of the backend's RAM pages: a translation a vCPU cached for it is stale once the grant is there.
        MemoryMarshal.Write(_page.Bytes, new GnttabMapGrantRef { HostAddr = 2 * 4096, Flags = (uint)GrantMapFlags.HostMap, Ref = 8, Dom = GranterId });
        long before = _provider.Invalidations;
        Assert.Equal(0, Call(GrantTableOp.MapGrantRef));
        var op = MemoryMarshal.Read<GnttabMapGrantRef>(_page.Bytes);
        Assert.Equal(0, op.Status);
        Assert.True(_provider.Invalidations - before >= _backend.Vcpus.Count, $"{_provider.Invalidations - before} flushes");

        // The unmap flushes too (before the page's reference goes).
        MemoryMarshal.Write(_page.Bytes, new GnttabUnmapGrantRef { HostAddr = 2 * 4096, Handle = op.Handle });
        before = _provider.Invalidations;
        Assert.Equal(0, Call(GrantTableOp.UnmapGrantRef));
        Assert.Equal(0, MemoryMarshal.Read<GnttabUnmapGrantRef>(_page.Bytes).Status);
        Assert.True(_provider.Invalidations - before >= _backend.Vcpus.Count, $"{_provider.Invalidations - before} flushes");
    }

    /// <summary>The default processors, counting every INVEPT the hypervisor issues on any of them.</summary>
    private sealed class CountingProvider : IProcessorProvider
    {
        private readonly IProcessorProvider _inner = ProcessorProviders.CreateDefault();
        private long _invalidations;

        public long Invalidations => Interlocked.Read(ref _invalidations);

        public VmxCapabilities Capabilities => _inner.Capabilities;

        public VmcsHostState HostState => _inner.HostState;

        public IVirtualProcessor Create(MachineMemory memory) => new Counting(_inner.Create(memory), this);

        private sealed class Counting(IVirtualProcessor inner, CountingProvider owner) : IVirtualProcessor, IDisposable
        {
            public ref GuestRegisters Registers => ref inner.Registers;

            public ulong InstructionsRetired => inner.InstructionsRetired;

            public VmExit Run(Vmcs vmcs) => inner.Run(vmcs);

            public void InvalidateEpt(InveptType type, EptPointer eptPointer)
            {
                Interlocked.Increment(ref owner._invalidations);
                inner.InvalidateEpt(type, eptPointer);
            }

            public void RequestExit() => inner.RequestExit();

            public void Dispose() => (inner as IDisposable)?.Dispose();
        }
    }
}
