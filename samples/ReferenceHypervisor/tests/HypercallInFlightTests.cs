using System.Runtime.InteropServices;
using VmmKit.Ept;
using VmmKit.GrantTable;
using VmmKit.Hypercall;
using VmmKit.ReferenceHypervisor.Hypercalls;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// A hypercall in flight on one vCPU while another vCPU of its domain changes the physmap under the page it reads. Xen
/// holds a page reference across each <c>copy_from_guest</c>, so a page a hypercall is using is not freed under it; here a
/// vCPU out of the guest holds its domain's <see cref="PhysmapLock"/> to read (<see cref="VirtualCpu.RunSlice"/>), and a
/// change of the physmap waits for it. Without that, the page's frame went back to the machine's pool, or to another
/// domain, while the hypercall still read or wrote it: an EPT flush waits only for vCPUs inside the guest.
/// </summary>
public sealed class HypercallInFlightTests : IDisposable
{
    private const ulong CodeGfn = 1, BufferGfn = 6, GrantedGfn = 3;
    private const int WriteLength = 256;
    private const uint GrantRef = 8;
    private const ushort GuestId = 1, GranterId = 2;
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);

    private readonly Machine _machine = new(64 << 20, ProcessorProviders.CreateDefault(), MachineMemoryBacking.Anonymous, inProcessBackend: false);
    private readonly Domain _guest;
    private readonly GuestPage _page = new();
    private readonly ManualResetEventSlim _paused = new(), _release = new();
    private VcpuThread? _thread;

    public HypercallInFlightTests()
    {
        _machine.AddDomain(new Domain(_machine, 0, "d0", 1, privileged: true, upcall: null));
        _guest = Create(GuestId, vcpus: 2);
        // vCPU 0: console_io(CONSOLEIO_write, 256, 0x6000), then HLT with interrupts off (the vCPU goes down).
        byte[] code =
        [
            0xB8, 18, 0, 0, 0,                                     // mov eax, __HYPERVISOR_console_io
            0x31, 0xDB,                                            // xor ebx, ebx (CONSOLEIO_write)
            0xB9, WriteLength & 0xFF, WriteLength >> 8, 0, 0,      // mov ecx, 256
            0xBA, 0, (byte)(BufferGfn << 4), 0, 0,                 // mov edx, gfn 6's address
            0x0F, 0x01, 0xC1,                                      // vmcall
            0xF4,                                                  // hlt
        ];
        code.CopyTo(Frame(_guest, CodeGfn));

        // The write reads its second 128-byte chunk after a preemption check: the test holds vCPU 0 there, inside the
        // hypercall, with the page translated once and to be translated again.
        _machine.Hypercalls.PreemptCheck = v =>
        {
            if (v.Domain == _guest && v.Id == 0 && !_paused.IsSet)
            {
                _paused.Set();
                _release.Wait(Limit);
            }

            return false;
        };
    }

    public void Dispose()
    {
        _release.Set();
        if (_thread is { } thread)
        {
            thread.Stop();
            thread.Join();
            thread.Vcpu.Thread = null;
        }

        _machine.Dispose();
    }

    private Domain Create(ushort id, uint vcpus)
    {
        var d = new Domain(_machine, id, $"d{id}", vcpus, privileged: false, upcall: null);
        _machine.AddDomain(d);
        d.SetMaxPages(32);
        for (ulong gfn = 0; gfn < 8; gfn++)
            Assert.Equal(0, d.Populate(gfn));
        Assert.Equal(0, d.InitialiseBootVcpu((uint)(CodeGfn << 12), 0));
        return d;
    }

    private Span<byte> Frame(Domain d, ulong gfn)
    {
        Assert.True(d.Ept.TryLookup(new GuestFrameNumber(gfn), out var frame, out _));
        return _machine.Memory.GetFrame(frame);
    }

    /// <summary>A hypercall of <paramref name="vcpu"/> made from the test's thread, its argument in <see cref="GuestPage"/> <paramref name="page"/>.</summary>
    private long Call(VirtualCpu vcpu, GuestPage page, HypercallNumber number, ulong argument0, ulong argument2 = 1)
    {
        var regs = new HypercallRegisters { Rax = (ulong)number, Rdi = argument0, Rsi = 0, Rdx = argument2 };
        _machine.Hypercalls.Dispatch(vcpu, ref regs, GuestX86Mode.Long64, 0, page);
        return (long)regs.Rax;
    }

    /// <summary>Starts vCPU 0 on a thread of its own, as the threaded scheduler does, and waits until it is inside the write.</summary>
    private void StartWriteAndHoldIt()
    {
        var vcpu0 = _guest.Vcpus[0];
        _guest.PauseCount = 0;   // created paused, as the toolstack creates a domain
        _thread = new VcpuThread(vcpu0);
        vcpu0.Thread = _thread;
        _thread.Start();
        Assert.True(_paused.Wait(Limit), $"vCPU 0 did not reach its console write: {_guest.State} {_guest.CrashReport}");
    }

    /// <summary>
    /// Runs <paramref name="change"/> (vCPU 1's physmap change) while vCPU 0 is inside its write, then lets the write go
    /// on, and returns whether the change had completed before that, and its result.
    /// </summary>
    private (bool CompletedInFlight, long Result) ChangeDuringTheWrite(Func<long> change)
    {
        StartWriteAndHoldIt();
        var task = Task.Run(change);
        bool completedInFlight = task.Wait(TimeSpan.FromMilliseconds(500));
        _release.Set();
        Assert.True(task.Wait(Limit), "the physmap change did not complete once the hypercall was over");
        return (completedInFlight, task.Result);
    }

    private string Written() => _guest.Console.Transcript;

    public enum PhysmapChange
    {
        RemoveFromPhysmap,
        SharedInfoOverThePage,
    }

    [Theory]
    [InlineData(PhysmapChange.RemoveFromPhysmap)]
    [InlineData(PhysmapChange.SharedInfoOverThePage)]
    public void A_physmap_change_by_another_vcpu_waits_for_the_hypercall_reading_the_page(PhysmapChange kind)
    {
        Frame(_guest, BufferGfn)[..WriteLength].Fill((byte)'A');
        ulong freeBefore = _machine.Memory.FreeFrames;
        var vcpu1 = _guest.Vcpus[1];

        var (inFlight, rc) = ChangeDuringTheWrite(() =>
        {
            var page = new GuestPage();
            if (kind == PhysmapChange.RemoveFromPhysmap)
            {
                MemoryMarshal.Write(page.Bytes, new XenRemoveFromPhysmap { Domid = DomainId.Self, Gpfn = BufferGfn });
                return Call(vcpu1, page, HypercallNumber.MemoryOp, XenRemoveFromPhysmap.SubOp);
            }

            MemoryMarshal.Write(page.Bytes, new XenAddToPhysmap { Domid = DomainId.Self, Space = (uint)XenMapSpace.SharedInfo, Gpfn = BufferGfn });
            return Call(vcpu1, page, HypercallNumber.MemoryOp, (ulong)MemoryOp.AddToPhysmap);
        });

        Assert.False(inFlight, $"{kind} completed while vCPU 0's hypercall was reading the page: its frame was freed under it");
        Assert.Equal(0, rc);
        Assert.Equal(new string('A', WriteLength), Written());
        Assert.Equal(freeBefore + 1, _machine.Memory.FreeFrames);   // the page is freed once, after the write
    }

    [Fact]
    public void A_grant_unmap_by_another_vcpu_waits_for_the_hypercall_reading_the_mapped_page()
    {
        // Domain 2 grants domain 1 its gfn 3; vCPU 1 maps it at gfn 6 (over a RAM page); then domain 2 takes gfn 3 out of
        // its physmap, so the mapping holds the frame's last reference and the unmap frees it.
        var granter = Create(GranterId, vcpus: 1);
        Frame(granter, GrantedGfn)[..WriteLength].Fill((byte)'G');
        MemoryMarshal.Write(_machine.Memory.GetFrame(granter.Grants.GetSharedFrame(0))[(int)(GrantRef * GrantEntryV1.Size)..],
            new GrantEntryV1 { Flags = (ushort)GrantEntryFlags.PermitAccess, DomId = GuestId, Frame = (uint)GrantedGfn });
        var vcpu1 = _guest.Vcpus[1];
        MemoryMarshal.Write(_page.Bytes, new GnttabMapGrantRef { HostAddr = BufferGfn << 12, Flags = (uint)GrantMapFlags.HostMap, Ref = GrantRef, Dom = GranterId });
        Assert.Equal(0, Call(vcpu1, _page, HypercallNumber.GrantTableOp, (ulong)GrantTableOp.MapGrantRef));
        var map = MemoryMarshal.Read<GnttabMapGrantRef>(_page.Bytes);
        Assert.Equal(0, map.Status);
        var granterPage = new GuestPage();
        MemoryMarshal.Write(granterPage.Bytes, new XenRemoveFromPhysmap { Domid = DomainId.Self, Gpfn = GrantedGfn });
        Assert.Equal(0, Call(granter.Vcpus[0], granterPage, HypercallNumber.MemoryOp, XenRemoveFromPhysmap.SubOp));
        ulong freeBefore = _machine.Memory.FreeFrames;

        var (inFlight, rc) = ChangeDuringTheWrite(() =>
        {
            MemoryMarshal.Write(_page.Bytes, new GnttabUnmapGrantRef { HostAddr = BufferGfn << 12, Handle = map.Handle });
            return Call(vcpu1, _page, HypercallNumber.GrantTableOp, (ulong)GrantTableOp.UnmapGrantRef);
        });

        Assert.False(inFlight, "the unmap completed while vCPU 0's hypercall was reading the mapped page: its frame was freed under it");
        Assert.Equal(0, rc);
        Assert.Equal(0, MemoryMarshal.Read<GnttabUnmapGrantRef>(_page.Bytes).Status);
        Assert.Equal(new string('G', WriteLength), Written());
        Assert.Equal(freeBefore + 1, _machine.Memory.FreeFrames);   // the granted frame, freed by the unmap after the write
    }
}
