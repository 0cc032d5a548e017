using System.Runtime.CompilerServices;

namespace VmmKit.EventChannel;

/// <summary>
/// The FIFO ABI of one domain (xen/common/event_fifo.c): event array pages of 1024 event words,
/// a control block per vCPU with the queue heads and the READY bits, and per vCPU 16 priority
/// queues whose tails only the hypervisor knows. The guest consumes queues lock-free
/// (Linux drivers/xen/events/events_fifo.c); the hypervisor links events with compare-exchange on
/// the tail's event word, holding the BUSY bit so the guest cannot unmask meanwhile.
/// </summary>
internal sealed unsafe class FifoAbi
{
    private readonly EventChannelDomain _domain;
    private readonly nint[] _pages = new nint[FifoEventWord.MaxEventArrayPages];
    private readonly ulong[] _pageGfns = new ulong[FifoEventWord.MaxEventArrayPages];
    private int _numPorts; // published after _pages[] (Xen's num_evtchns, XSA-340 ordering)

    public readonly FifoVcpu[] Vcpus;

    public FifoAbi(EventChannelDomain domain)
    {
        _domain = domain;
        // XSA-107: a queue structure for every vCPU, whether or not it has a control block yet.
        Vcpus = new FifoVcpu[domain.VcpuCount];
        for (int v = 0; v < Vcpus.Length; v++)
            Vcpus[v] = new FifoVcpu(v);
    }

    /// <summary>Ports that currently have an event word.</summary>
    public int NumPorts => Volatile.Read(ref _numPorts);

    /// <summary><c>evtchn_fifo_word_from_port</c>: null when the port's array page is not there.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public uint* Word(uint port)
    {
        if (port >= (uint)Volatile.Read(ref _numPorts))
            return null;
        return (uint*)_pages[port / FifoEventWord.WordsPerPage] + port % FifoEventWord.WordsPerPage;
    }

    /// <summary><c>map_control_block</c>; the caller holds the event lock.</summary>
    public long MapControlBlock(int vcpu, ulong gfn, uint offset, IGuestFrameMapper mapper)
    {
        FifoVcpu v = Vcpus[vcpu];
        if (v.ControlBlock != 0)
            return -(long)Hypercall.XenErrno.EINVAL;
        if (!mapper.TryMap(gfn, out byte* page))
            return -(long)Hypercall.XenErrno.EINVAL;
        v.Gfn = gfn;
        v.Page = (nint)page;
        byte* block = page + offset;
        for (int i = 0; i < FifoEventWord.MaxQueues; i++)
            v.Queues[i].Head = (nint)(block + 8 + 4 * i);
        // XSA-358: the block is published only after every queue head points into it.
        Volatile.Write(ref v.ControlBlock, (nint)block);
        return 0;
    }

    /// <summary><c>add_page_to_event_array</c>; the caller holds the event lock.</summary>
    public long AddPage(ulong gfn, IGuestFrameMapper mapper)
    {
        int slot = _numPorts / FifoEventWord.WordsPerPage;
        if (slot >= FifoEventWord.MaxEventArrayPages)
            return -(long)Hypercall.XenErrno.ENOSPC;
        if (!mapper.TryMap(gfn, out byte* page))
            return -(long)Hypercall.XenErrno.EINVAL;
        _pages[slot] = (nint)page;
        _pageGfns[slot] = gfn;
        Volatile.Write(ref _numPorts, _numPorts + FifoEventWord.WordsPerPage);

        // Ports already bound in the new page get the pending state saved while they had no word.
        uint first = (uint)(slot * FifoEventWord.WordsPerPage);
        for (uint port = first; port < first + FifoEventWord.WordsPerPage; port++)
        {
            Channel? chn = _domain.TryGetChannel(port);
            if (chn is null)
                break;
            lock (chn.Lock)
            {
                if (chn.FifoPending)
                {
                    chn.FifoPending = false;
                    SetPending(chn.NotifyVcpu, chn);
                }
            }
        }
        return 0;
    }

    /// <summary><c>evtchn_fifo_destroy</c>: drops every page reference. No other thread may use this object any more.</summary>
    public void Unmap(IGuestFrameMapper mapper)
    {
        int pages = _numPorts / FifoEventWord.WordsPerPage;
        Volatile.Write(ref _numPorts, 0);
        for (int i = 0; i < pages; i++)
        {
            mapper.Unmap(_pageGfns[i], (byte*)_pages[i]);
            _pages[i] = 0;
        }
        foreach (FifoVcpu v in Vcpus)
        {
            if (v.Page != 0)
                mapper.Unmap(v.Gfn, (byte*)v.Page);
            v.Page = 0;
            Volatile.Write(ref v.ControlBlock, 0);
        }
    }

    /// <summary><c>evtchn_fifo_set_pending</c>.</summary>
    public void SetPending(int vcpu, Channel evtchn)
    {
        uint port = evtchn.Port;
        uint* word = Word(port);
        if (word == null)
        {
            // The event array page may not exist yet: keep the state for when it is added.
            evtchn.FifoPending = true;
            return;
        }

        FifoVcpu v = Vcpus[vcpu];
        FifoQueue q = v.Queues[0], oldQ = q;
        bool locked = false, linked = true;

        // Lock the queue the event goes to and the one it was last on (a priority or vCPU change
        // may make them differ), in a fixed order; retry if either changed meanwhile (XSA-343).
        for (int attempt = 0; attempt < 3; attempt++)
        {
            int last = Volatile.Read(ref evtchn.FifoLastQueue);
            q = v.Queues[evtchn.Priority];
            oldQ = Vcpus[last >> 4].Queues[last & 15];
            LockPair(q, oldQ);
            last = Volatile.Read(ref evtchn.FifoLastQueue);
            if (q == v.Queues[evtchn.Priority] && oldQ == Vcpus[last >> 4].Queues[last & 15])
            {
                locked = true;
                break;
            }
            UnlockPair(q, oldQ);
        }
        if (!locked)
            return; // Xen: "lost event (too many queue changes)"

        // XSA-107: no control block on this vCPU. The guest must not unmask an event before it
        // registers one, so Xen drops the event here.
        if (Volatile.Read(ref v.ControlBlock) == 0)
        {
            UnlockPair(q, oldQ);
            return;
        }

        Interlocked.Or(ref *word, FifoEventWord.Pending);

        if ((Volatile.Read(ref *word) & FifoEventWord.Masked) == 0
            && (Interlocked.Or(ref *word, FifoEventWord.Linked) & FifoEventWord.Linked) == 0)
        {
            // If this event was the old queue's tail, that queue is now empty.
            if (oldQ.Tail == port)
                oldQ.Tail = 0;
            if (oldQ != q)
            {
                Volatile.Write(ref evtchn.FifoLastQueue, (vcpu << 4) | q.Priority);
                oldQ.Lock.Exit();
                oldQ = q;
            }

            // Link the tail to this port iff the tail is still LINKED; otherwise the queue was
            // empty and the head moves to this port.
            linked = false;
            if (q.Tail != 0)
            {
                uint* tailWord = Word(q.Tail);
                linked = tailWord != null && SetLink(tailWord, port);
            }
            if (!linked)
                Volatile.Write(ref *(uint*)q.Head, port);
            q.Tail = port;
        }

        UnlockPair(q, oldQ);

        if (!linked)
        {
            uint bit = 1u << q.Priority;
            uint* ready = (uint*)Volatile.Read(ref v.ControlBlock);
            if ((Interlocked.Or(ref *ready, bit) & bit) == 0)
                _domain.MarkEventsPending(vcpu);
        }
    }

    /// <summary><c>evtchn_fifo_clear_pending</c>: only PENDING; the guest unlinks the event itself.</summary>
    public void ClearPending(Channel evtchn)
    {
        evtchn.FifoPending = false;
        uint* word = Word(evtchn.Port);
        if (word != null)
            Interlocked.And(ref *word, ~FifoEventWord.Pending);
    }

    /// <summary><c>evtchn_fifo_unmask</c>: clear MASKED and relink if pending.</summary>
    public void Unmask(Channel evtchn)
    {
        uint* word = Word(evtchn.Port);
        if (word == null)
            return;
        Interlocked.And(ref *word, ~FifoEventWord.Masked);
        if ((Volatile.Read(ref *word) & FifoEventWord.Pending) != 0)
            SetPending(evtchn.NotifyVcpu, evtchn);
    }

    /// <summary>
    /// <c>evtchn_fifo_is_pending</c>: the event word's PENDING bit; false for a port without a word, whose
    /// saved pending state shows only once <c>expand_array</c> re-raises it.
    /// </summary>
    public bool IsPending(Channel evtchn)
    {
        uint* word = Word(evtchn.Port);
        return word != null && (Volatile.Read(ref *word) & FifoEventWord.Pending) != 0;
    }

    /// <summary><c>evtchn_fifo_is_masked</c>: a port without a word counts as masked.</summary>
    public bool IsMasked(Channel evtchn)
    {
        uint* word = Word(evtchn.Port);
        return word == null || (Volatile.Read(ref *word) & FifoEventWord.Masked) != 0;
    }

    /// <summary><c>evtchn_fifo_is_busy</c>: still LINKED, so the port cannot be reused yet.</summary>
    public bool IsBusy(uint port)
    {
        uint* word = Word(port);
        return word != null && (Volatile.Read(ref *word) & FifoEventWord.Linked) != 0;
    }

    // try_set_link: 1 linked, 0 not linked (the tail was unlinked by the guest), -1 retry.
    private static int TrySetLink(uint* word, ref uint w, uint link)
    {
        if ((w & FifoEventWord.Linked) == 0)
            return 0;
        uint old = w;
        uint next = (old & ~(FifoEventWord.Busy | FifoEventWord.LinkMask)) | link;
        w = Interlocked.CompareExchange(ref *word, next, old);
        return w == old ? 1 : -1;
    }

    // evtchn_fifo_set_link: the guest may only set/clear MASKED, clear PENDING or clear LINKED on
    // a linked word; with BUSY set it cannot unmask, so a few compare-exchanges suffice.
    private static bool SetLink(uint* word, uint link)
    {
        uint w = Volatile.Read(ref *word);
        int ret = TrySetLink(word, ref w, link);
        if (ret >= 0)
            return ret == 1;

        Interlocked.Or(ref *word, FifoEventWord.Busy);
        w = Volatile.Read(ref *word);
        for (int attempt = 0; attempt < 4; attempt++)
        {
            ret = TrySetLink(word, ref w, link);
            if (ret >= 0)
            {
                if (ret == 0)
                    Interlocked.And(ref *word, ~FifoEventWord.Busy);
                return ret == 1;
            }
        }
        Interlocked.And(ref *word, ~FifoEventWord.Busy);
        return true; // Xen: "port not linked" - a misbehaving guest loses its own event
    }

    private static void LockPair(FifoQueue a, FifoQueue b) => LockOrder.Enter(a.Lock, a.Ordinal, b.Lock, b.Ordinal);

    private static void UnlockPair(FifoQueue a, FifoQueue b) => LockOrder.Exit(a.Lock, b.Lock);
}

/// <summary>Xen's <c>struct evtchn_fifo_vcpu</c>: a vCPU's control block and queues.</summary>
internal sealed class FifoVcpu
{
    public nint ControlBlock;
    public nint Page;
    public ulong Gfn;
    public readonly FifoQueue[] Queues = new FifoQueue[FifoEventWord.MaxQueues];

    public FifoVcpu(int vcpu)
    {
        for (int i = 0; i < Queues.Length; i++)
            Queues[i] = new FifoQueue(i, vcpu * FifoEventWord.MaxQueues + i);
    }
}

/// <summary>Xen's <c>struct evtchn_fifo_queue</c>: head pointer into the control block, tail port, lock.</summary>
internal sealed class FifoQueue(int priority, int ordinal)
{
    public readonly int Priority = priority;
    public readonly int Ordinal = ordinal;
    public readonly Lock Lock = new();
    public nint Head;
    public uint Tail;
}
