using System.Numerics;
using VmmKit.Hypercall;

namespace VmmKit.EventChannel.Tests;

/// <summary>
/// A guest domain for tests: its frames (frame 0 is shared_info; with FIFO, frame 1 holds the
/// control blocks and frames 2.. the event array), and the guest side of both ABIs written the
/// way Linux does it (drivers/xen/events/events_2l.c and events_fifo.c): masking and unmasking
/// in guest memory, clearing pending bits, and draining events after an upcall.
/// </summary>
internal sealed unsafe class TestGuest : IDisposable
{
    public const ulong SharedInfoGfn = 0, ControlGfn = 1, FirstArrayGfn = 2;

    public TestGuest(EventChannelHypervisor hv, ushort id, int vcpus, int maxPorts = 1024, bool control = false, int frames = 8, IEventChannelUpcall? upcall = null)
    {
        Frames = new TestGuestFrames(frames);
        Upcalls = new CountingUpcall();
        Domain = hv.CreateDomain(new EventChannelDomainOptions
        {
            Id = id, VcpuCount = vcpus, Upcall = upcall ?? Upcalls, FrameMapper = Frames, MaxPorts = maxPorts, IsControlDomain = control,
        });
        Domain.SetSharedInfo(Frames.Page(SharedInfoGfn));
        Hv = hv;
    }

    public EventChannelHypervisor Hv { get; }
    public EventChannelDomain Domain { get; }
    public TestGuestFrames Frames { get; }
    public CountingUpcall Upcalls { get; }
    public bool Fifo { get; set; }

    private byte* Shared => Frames.Page(SharedInfoGfn);
    private ulong* Pending2L => (ulong*)(Shared + 2048);
    private ulong* Mask2L => (ulong*)(Shared + 2560);
    private byte* VcpuInfo(int v) => Shared + 64 * v;

    public ref byte UpcallPending(int v) => ref *VcpuInfo(v);
    public ref ulong PendingSel(int v) => ref *(ulong*)(VcpuInfo(v) + 8);

    /// <summary>Switches to FIFO like Linux: a control block per vCPU (72 bytes apart in frame 1) and <paramref name="pages"/> array pages.</summary>
    public void InitFifo(int pages = 1)
    {
        for (int v = 0; v < Domain.VcpuCount; v++)
        {
            var op = new EvtchnInitControl { ControlGfn = ControlGfn, Offset = (uint)(v * 80), Vcpu = (uint)v };
            long rc = Hv.InitControl(Domain, ref op);
            if (rc != 0)
                throw new InvalidOperationException($"init_control: {rc}");
        }
        for (int i = 0; i < pages; i++)
        {
            long rc = Hv.ExpandArray(Domain, new EvtchnExpandArray { ArrayGfn = FirstArrayGfn + (ulong)i });
            if (rc != 0)
                throw new InvalidOperationException($"expand_array: {rc}");
        }
        Fifo = true;
    }

    public uint* Word(uint port) => (uint*)Frames.Page(FirstArrayGfn + port / 1024) + port % 1024;
    public uint* Ready(int v) => (uint*)(Frames.Page(ControlGfn) + v * 80);
    public uint* Head(int v, int q) => (uint*)(Frames.Page(ControlGfn) + v * 80 + 8 + 4 * q);

    public bool GuestPending(uint port) => Fifo ? (*Word(port) & FifoEventWord.Pending) != 0 : (Pending2L[port / 64] & (1UL << (int)(port % 64))) != 0;
    public bool GuestMasked(uint port) => Fifo ? (*Word(port) & FifoEventWord.Masked) != 0 : (Mask2L[port / 64] & (1UL << (int)(port % 64))) != 0;
    public bool GuestLinked(uint port) => Fifo && (*Word(port) & FifoEventWord.Linked) != 0;

    /// <summary>Linux's mask_evtchn: set the mask bit in guest memory (no hypercall).</summary>
    public void Mask(uint port)
    {
        if (Fifo)
            Interlocked.Or(ref *Word(port), FifoEventWord.Masked);
        else
            Interlocked.Or(ref Mask2L[port / 64], 1UL << (int)(port % 64));
    }

    /// <summary>Linux's unmask: clear the bit locally when nothing is pending, else EVTCHNOP_unmask.</summary>
    public void Unmask(uint port)
    {
        if (Fifo)
        {
            // clear_masked_cond: refuses while PENDING; waits while BUSY.
            uint* word = Word(port);
            uint w = Volatile.Read(ref *word);
            while (true)
            {
                if ((w & FifoEventWord.Masked) == 0)
                    return;
                if ((w & FifoEventWord.Pending) != 0)
                    break;
                uint old = w & ~FifoEventWord.Busy;
                uint seen = Interlocked.CompareExchange(ref *word, old & ~FifoEventWord.Masked, old);
                if (seen == old)
                    return;
                w = seen;
            }
        }
        else
        {
            // evtchn_2l_unmask for HVM: clear, and if pending re-mask and let Xen unmask (it only
            // raises the upcall when it clears the mask bit itself).
            ulong bit = 1UL << (int)(port % 64);
            Interlocked.And(ref Mask2L[port / 64], ~bit);
            if ((Volatile.Read(ref Pending2L[port / 64]) & bit) == 0)
                return;
            Interlocked.Or(ref Mask2L[port / 64], bit);
        }
        long rc = Hv.Unmask(Domain, port);
        if (rc != 0)
            throw new InvalidOperationException($"unmask: {rc}");
    }

    /// <summary>Clears a port's pending bit in guest memory (an ack without handling).</summary>
    public void ClearPending(uint port)
    {
        if (Fifo)
            Interlocked.And(ref *Word(port), ~FifoEventWord.Pending);
        else
            Interlocked.And(ref Pending2L[port / 64], ~(1UL << (int)(port % 64)));
    }

    /// <summary>
    /// The guest's upcall handler on vCPU <paramref name="v"/>: every pending unmasked port it finds
    /// is handled (its pending bit cleared) and added to <paramref name="delivered"/>. Returns
    /// false when it found an event although no upcall was pending (a lost notification).
    /// </summary>
    public bool Drain(int v, ICollection<uint> delivered)
    {
        bool upcall = Volatile.Read(ref UpcallPending(v)) != 0;
        Volatile.Write(ref UpcallPending(v), 0);
        int before = delivered.Count;
        if (Fifo)
            DrainFifo(v, delivered);
        else
            Drain2L(v, delivered);
        if (upcall || delivered.Count == before)
            return true;
        // Found events although upcall_pending was clear when the handler started: on another
        // thread a sender may be between setting the selector/READY bit and upcall_pending. A real
        // loss never sets it.
        var deadline = DateTime.UtcNow.AddSeconds(2);
        while (Volatile.Read(ref UpcallPending(v)) == 0)
        {
            if (DateTime.UtcNow > deadline)
                return false;
            Thread.Yield();
        }
        return true;
    }

    private void Drain2L(int v, ICollection<uint> delivered)
    {
        ulong words;
        while ((words = Interlocked.Exchange(ref PendingSel(v), 0)) != 0)
        {
            while (words != 0)
            {
                int w = BitOperations.TrailingZeroCount(words);
                words &= words - 1;
                ulong bits = Volatile.Read(ref Pending2L[w]) & ~Volatile.Read(ref Mask2L[w]);
                while (bits != 0)
                {
                    int b = BitOperations.TrailingZeroCount(bits);
                    bits &= bits - 1;
                    ulong bit = 1UL << b;
                    if ((Interlocked.And(ref Pending2L[w], ~bit) & bit) != 0)
                        delivered.Add((uint)(w * 64 + b));
                }
            }
        }
    }

    // __evtchn_fifo_handle_events + consume_one_event (Linux), with a local head per queue.
    private void DrainFifo(int v, ICollection<uint> delivered)
    {
        Span<uint> localHead = stackalloc uint[FifoEventWord.MaxQueues];
        uint ready = Interlocked.Exchange(ref *Ready(v), 0);
        while (ready != 0)
        {
            int q = BitOperations.TrailingZeroCount(ready);
            uint head = localHead[q];
            if (head == 0)
                head = Volatile.Read(ref *Head(v, q));
            uint port = head;
            uint* word = Word(port);
            // clear_linked: atomically drop LINKED and LINK, keep the next port.
            uint w = Volatile.Read(ref *word), old;
            do
            {
                old = w;
                w = Interlocked.CompareExchange(ref *word, old & ~(FifoEventWord.Linked | FifoEventWord.LinkMask), old);
            } while (w != old);
            head = old & FifoEventWord.LinkMask;
            if (head == 0)
                ready &= ~(1u << q);
            uint now = Volatile.Read(ref *word);
            if ((now & FifoEventWord.Pending) != 0 && (now & FifoEventWord.Masked) == 0)
            {
                if ((Interlocked.And(ref *word, ~FifoEventWord.Pending) & FifoEventWord.Pending) != 0)
                    delivered.Add(port);
            }
            localHead[q] = head;
            ready |= Interlocked.Exchange(ref *Ready(v), 0);
        }
    }

    public long Send(uint port) => Hv.Send(Domain, port);

    public uint AllocUnbound(ushort remote)
    {
        var op = new EvtchnAllocUnbound { Dom = DomainId.Self, RemoteDom = remote };
        long rc = Hv.AllocUnbound(Domain, ref op);
        return rc == 0 ? op.Port : throw new InvalidOperationException($"alloc_unbound: {rc}");
    }

    public uint BindInterdomain(ushort remote, uint remotePort)
    {
        var op = new EvtchnBindInterdomain { RemoteDom = remote, RemotePort = remotePort };
        long rc = Hv.BindInterdomain(Domain, ref op);
        return rc == 0 ? op.LocalPort : throw new InvalidOperationException($"bind_interdomain: {rc}");
    }

    public void Dispose()
    {
        Hv.DestroyDomain(Domain);
        Frames.Dispose();
    }
}
