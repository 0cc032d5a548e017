using System.Runtime.InteropServices;
using VmmKit.EventChannel;
using VmmKit.Hypercall;

namespace VmmKit.EventChannel.Benchmarks;

/// <summary>A domain whose guest memory is a few host pages: frame 0 shared_info, 1 the FIFO control blocks, 2.. the event array.</summary>
internal sealed unsafe class BenchGuest : IGuestFrameMapper, IEventChannelUpcall, IDisposable
{
    private readonly byte*[] _frames = new byte*[4];
    public long Upcalls;

    public BenchGuest(EventChannelHypervisor hv, ushort id, int vcpus, bool fifo)
    {
        for (int i = 0; i < _frames.Length; i++)
        {
            _frames[i] = (byte*)NativeMemory.AlignedAlloc(4096, 4096);
            NativeMemory.Clear(_frames[i], 4096);
        }
        Domain = hv.CreateDomain(new EventChannelDomainOptions { Id = id, VcpuCount = vcpus, Upcall = this, FrameMapper = this, MaxPorts = 1024 });
        Domain.SetSharedInfo(_frames[0]);
        if (!fifo)
            return;
        for (int v = 0; v < vcpus; v++)
        {
            var init = new EvtchnInitControl { ControlGfn = 1, Offset = (uint)(v * 80), Vcpu = (uint)v };
            if (hv.InitControl(Domain, ref init) != 0)
                throw new InvalidOperationException("init_control");
        }
        if (hv.ExpandArray(Domain, new EvtchnExpandArray { ArrayGfn = 2 }) != 0)
            throw new InvalidOperationException("expand_array");
    }

    public EventChannelDomain Domain { get; }
    public byte* SharedInfo => _frames[0];
    public uint* EventWord(uint port) => (uint*)_frames[2] + port;
    public uint* Ready(int vcpu) => (uint*)(_frames[1] + vcpu * 80);

    public bool TryMap(ulong gfn, out byte* page)
    {
        page = gfn < (ulong)_frames.Length ? _frames[gfn] : null;
        return page != null;
    }

    public void Unmap(ulong gfn, byte* page) { }

    public void RaiseUpcall(EventChannelDomain domain, int vcpu) => Interlocked.Increment(ref Upcalls);

    public void Dispose()
    {
        Domain.Hypervisor.DestroyDomain(Domain);
        foreach (byte* f in _frames)
            NativeMemory.AlignedFree(f);
    }

    public static (uint Local, uint Remote) Connect(EventChannelHypervisor hv, BenchGuest from, BenchGuest to)
    {
        var alloc = new EvtchnAllocUnbound { Dom = DomainId.Self, RemoteDom = from.Domain.Id };
        if (hv.AllocUnbound(to.Domain, ref alloc) != 0)
            throw new InvalidOperationException("alloc_unbound");
        var bind = new EvtchnBindInterdomain { RemoteDom = to.Domain.Id, RemotePort = alloc.Port };
        if (hv.BindInterdomain(from.Domain, ref bind) != 0)
            throw new InvalidOperationException("bind_interdomain");
        return (bind.LocalPort, alloc.Port);
    }
}
