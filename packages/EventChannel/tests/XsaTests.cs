using VmmKit.Hypercall;

namespace VmmKit.EventChannel.Tests;

/// <summary>
/// One test per event-channel XSA class: what the advisory was in Xen, and a test that this
/// implementation cannot have it.
/// </summary>
public unsafe class XsaTests
{
    private static long E(XenErrno e) => e.Negated();

    /// <summary>
    /// XSA-107 (2014): with the FIFO ABI, Xen did not check that a vCPU had a control block before
    /// queuing an event for it; a guest that bound or moved an event to a vCPU it had not
    /// initialised made Xen dereference a NULL control block. Here every vCPU gets its queues at the
    /// first init_control and an event for a vCPU without a control block is dropped, as in fixed Xen.
    /// </summary>
    [Fact]
    public void Xsa107_event_for_a_vcpu_without_control_block_is_dropped_safely()
    {
        var hv = new EventChannelHypervisor();
        using var g = new TestGuest(hv, 1, vcpus: 3);
        var init = new EvtchnInitControl { ControlGfn = TestGuest.ControlGfn, Offset = 0, Vcpu = 0 };
        Assert.Equal(0, hv.InitControl(g.Domain, ref init));
        Assert.Equal(FifoEventWord.LinkBits, init.LinkBits);
        Assert.Equal(0, hv.ExpandArray(g.Domain, new EvtchnExpandArray { ArrayGfn = TestGuest.FirstArrayGfn }));
        g.Fifo = true;

        var ipi = new EvtchnBindIpi { Vcpu = 2 };
        Assert.Equal(0, hv.BindIpi(g.Domain, ref ipi));
        uint unbound = g.AllocUnbound(1);
        var loop = new EvtchnBindInterdomain { RemoteDom = DomainId.Self, RemotePort = unbound };
        Assert.Equal(0, hv.BindInterdomain(g.Domain, ref loop));
        Assert.Equal(0, hv.BindVcpu(g.Domain, new EvtchnBindVcpu { Port = unbound, Vcpu = 1 }));

        Assert.Equal(0, g.Send(ipi.Port));
        Assert.Equal(0, g.Send(loop.LocalPort)); // goes to 'unbound', now on vCPU 1
        hv.SendVirq(g.Domain, 1, Virq.Timer);    // not bound: nothing
        Assert.Equal(0, hv.Unmask(g.Domain, ipi.Port));
        Assert.Equal(0, g.Upcalls.Count(1) + g.Upcalls.Count(2));
        Assert.False(hv.IsPending(g.Domain, ipi.Port));
        Assert.False(hv.IsPending(g.Domain, unbound));

        // Once the vCPU registers its block, events flow.
        init = new EvtchnInitControl { ControlGfn = TestGuest.ControlGfn, Offset = 160, Vcpu = 2 };
        Assert.Equal(0, hv.InitControl(g.Domain, ref init));
        Assert.Equal(0, g.Send(ipi.Port));
        Assert.Equal(1, g.Upcalls.Count(2));
        var seen = new List<uint>();
        Assert.True(g.Drain(2, seen));
        Assert.Equal([ipi.Port], seen);
    }

    /// <summary>
    /// XSA-188 (2016): when EVTCHNOP_init_control failed on a bad frame, Xen freed the domain's FIFO
    /// structure but left the pointer to it, a use after free. Here a failed init_control publishes
    /// nothing and keeps no frame reference: the domain stays on the 2-level ABI and a later
    /// init_control works. Its checks: vCPU, alignment, a block crossing the page, a second block.
    /// </summary>
    [Fact]
    public void Xsa188_failed_init_control_leaves_nothing_behind()
    {
        var hv = new EventChannelHypervisor();
        using var g = new TestGuest(hv, 1, vcpus: 2, frames: 4);
        var bad = new EvtchnInitControl { ControlGfn = 1000, Offset = 0, Vcpu = 0 };
        Assert.Equal(E(XenErrno.EINVAL), hv.InitControl(g.Domain, ref bad));
        bad = new EvtchnInitControl { ControlGfn = TestGuest.ControlGfn, Offset = 4, Vcpu = 0 };
        Assert.Equal(E(XenErrno.EINVAL), hv.InitControl(g.Domain, ref bad));
        bad = new EvtchnInitControl { ControlGfn = TestGuest.ControlGfn, Offset = 4096 - 64, Vcpu = 0 }; // would cross the page
        Assert.Equal(E(XenErrno.EINVAL), hv.InitControl(g.Domain, ref bad));
        bad = new EvtchnInitControl { ControlGfn = TestGuest.ControlGfn, Offset = 0, Vcpu = 2 };
        Assert.Equal(E(XenErrno.ENOENT), hv.InitControl(g.Domain, ref bad));
        Assert.Equal(EventChannelAbiKind.TwoLevel, g.Domain.Abi);
        Assert.Equal(0, g.Frames.TotalReferences);

        // Still a working 2-level domain.
        var ipi = new EvtchnBindIpi();
        Assert.Equal(0, hv.BindIpi(g.Domain, ref ipi));
        Assert.Equal(0, g.Send(ipi.Port));
        Assert.True(g.GuestPending(ipi.Port));

        var ok = new EvtchnInitControl { ControlGfn = TestGuest.ControlGfn, Offset = 4096 - 72, Vcpu = 0 };
        Assert.Equal(0, hv.InitControl(g.Domain, ref ok));
        Assert.Equal(E(XenErrno.EINVAL), hv.InitControl(g.Domain, ref ok)); // vCPU 0 has one already
        Assert.Equal(E(XenErrno.EINVAL), hv.ExpandArray(g.Domain, new EvtchnExpandArray { ArrayGfn = 77 }));
        Assert.Equal(1, g.Frames.TotalReferences);
        Assert.False(hv.IsPending(g.Domain, ipi.Port)); // saved, no event word yet (evtchn_fifo_is_pending)
        Assert.Equal(0, hv.ExpandArray(g.Domain, new EvtchnExpandArray { ArrayGfn = TestGuest.FirstArrayGfn }));
        Assert.True(hv.IsPending(g.Domain, ipi.Port)); // the 2-level pending state was carried over
    }

    /// <summary>
    /// Frames the guest hands back while Xen still uses them (the class of XSA-188's use after free,
    /// from the guest's side): the control block and event array frames stay referenced, so the
    /// hypervisor never writes freed memory, and EVTCHNOP_reset drops the references.
    /// </summary>
    [Fact]
    public void Frames_removed_by_the_guest_stay_alive_until_reset()
    {
        var hv = new EventChannelHypervisor();
        using var g = new TestGuest(hv, 1, vcpus: 1);
        g.InitFifo();
        var ipi = new EvtchnBindIpi();
        Assert.Equal(0, hv.BindIpi(g.Domain, ref ipi));
        g.Frames.Remove(TestGuest.ControlGfn);
        g.Frames.Remove(TestGuest.FirstArrayGfn);
        Assert.False(g.Frames.IsFreed(TestGuest.ControlGfn));
        Assert.Equal(0, g.Send(ipi.Port));
        Assert.True(g.GuestPending(ipi.Port)); // written into the still-referenced frame
        Assert.Equal(0, hv.Reset(g.Domain, DomainId.Self));
        Assert.True(g.Frames.IsFreed(TestGuest.ControlGfn));
        Assert.True(g.Frames.IsFreed(TestGuest.FirstArrayGfn));
        var again = new EvtchnInitControl { ControlGfn = TestGuest.ControlGfn, Vcpu = 0 };
        Assert.Equal(E(XenErrno.EINVAL), hv.InitControl(g.Domain, ref again)); // no longer the guest's RAM
    }

    /// <summary>
    /// XSA-221 (2017): SCHEDOP_poll accepted any port number and Xen followed the bucket pointers of
    /// ports never allocated, dereferencing NULL. Here every operation on a port never allocated,
    /// however large, answers -EINVAL (poll: not pending) without touching a missing bucket; and a
    /// FIFO port without an event word keeps its pending state until expand_array adds its page.
    /// </summary>
    [Fact]
    public void Xsa221_ports_never_allocated_or_without_event_word_are_handled()
    {
        var hv = new EventChannelHypervisor();
        using var g = new TestGuest(hv, 1, vcpus: 1, maxPorts: 2048);
        foreach (uint port in new uint[] { 64, 1000, 4095, 4096, FifoEventWord.NrChannels, uint.MaxValue })
        {
            Assert.Equal(E(XenErrno.EINVAL), g.Send(port));
            Assert.Equal(E(XenErrno.EINVAL), hv.Close(g.Domain, port));
            Assert.Equal(E(XenErrno.EINVAL), hv.Unmask(g.Domain, port));
            Assert.Equal(E(XenErrno.EINVAL), hv.BindVcpu(g.Domain, new EvtchnBindVcpu { Port = port }));
            Assert.Equal(E(XenErrno.EINVAL), hv.SetPriority(g.Domain, new EvtchnSetPriority { Port = port }));
            var st = new EvtchnStatus { Dom = DomainId.Self, Port = port };
            Assert.Equal(E(XenErrno.EINVAL), hv.Status(g.Domain, ref st));
            var bi = new EvtchnBindInterdomain { RemoteDom = DomainId.Self, RemotePort = port };
            Assert.Equal(E(XenErrno.EINVAL), hv.BindInterdomain(g.Domain, ref bi));
            Assert.False(hv.IsPending(g.Domain, port));
            Assert.True(hv.IsMasked(g.Domain, port));
        }

        g.InitFifo(pages: 1); // ports 0-1023 have words
        var ports = new List<uint>();
        for (int i = 0; i < 1100; i++)
        {
            var ipi = new EvtchnBindIpi();
            Assert.Equal(0, hv.BindIpi(g.Domain, ref ipi));
            ports.Add(ipi.Port);
        }
        uint high = ports[^1];
        Assert.True(high >= 1024);
        Assert.Equal(0, g.Send(high));
        Assert.False(hv.IsPending(g.Domain, high)); // saved for expand_array, not visible (evtchn_fifo_is_pending)
        Assert.True(hv.IsMasked(g.Domain, high));
        Assert.Equal(0, hv.Unmask(g.Domain, high));
        Assert.Equal(0, g.Upcalls.Total);
        Assert.Equal(0, hv.ExpandArray(g.Domain, new EvtchnExpandArray { ArrayGfn = TestGuest.FirstArrayGfn + 1 }));
        Assert.Equal(1, g.Upcalls.Total);
        var seen = new List<uint>();
        Assert.True(g.Drain(0, seen));
        Assert.Equal([high], seen);
    }

    /// <summary>
    /// The XSA-221 class after an ABI switch: EVTCHNOP_reset from FIFO leaves ports above 4096
    /// valid but without a 2-level bit; operations on them must not write past the bitmaps into
    /// the rest of shared_info (or past the page).
    /// </summary>
    [Fact]
    public void Ports_without_a_two_level_bit_after_reset_touch_no_memory()
    {
        var hv = new EventChannelHypervisor();
        using var g = new TestGuest(hv, 1, vcpus: 1, maxPorts: 8192);
        g.InitFifo(pages: 5);
        var ipi = new EvtchnBindIpi();
        for (int i = 1; i < 4200; i++)
            Assert.Equal(0, hv.BindIpi(g.Domain, ref ipi));
        Assert.Equal(0, hv.Reset(g.Domain, DomainId.Self));
        g.Fifo = false;
        byte* shared = g.Frames.Page(TestGuest.SharedInfoGfn);
        new Span<byte>(shared + 3072, 1024).Fill(0x5A);
        foreach (uint port in new uint[] { 4096, 4150, 4199 })
        {
            Assert.Equal(0, hv.Unmask(g.Domain, port));
            Assert.False(hv.IsPending(g.Domain, port));
            Assert.True(hv.IsMasked(g.Domain, port));
            Assert.Equal(E(XenErrno.EINVAL), hv.Close(g.Domain, port));
            Assert.Equal(E(XenErrno.EINVAL), g.Send(port));
        }
        Assert.True(new Span<byte>(shared + 3072, 1024).IndexOfAnyExcept((byte)0x5A) < 0);
    }

    /// <summary>
    /// XSA-317 (2020): a port allocation that failed because the port was beyond what the ABI
    /// supports left a half-initialised bucket and port behind, which later operations tripped
    /// over. Here every limit is checked before anything is allocated: refusals change nothing,
    /// a 32-bit guest stops at 1024 ports, and a closed FIFO port still LINKED is not reused.
    /// </summary>
    [Fact]
    public void Xsa317_refused_allocations_leave_no_trace_and_busy_ports_are_not_reused()
    {
        var hv = new EventChannelHypervisor();
        using var g = new TestGuest(hv, 1, vcpus: 1, maxPorts: 4096);
        g.Domain.SetSharedInfo(g.Frames.Page(TestGuest.SharedInfoGfn), compat: true);
        var ipi = new EvtchnBindIpi();
        for (int i = 1; i < 1024; i++)
            Assert.Equal(0, hv.BindIpi(g.Domain, ref ipi));
        Assert.Equal(1023u, ipi.Port);
        int valid = g.Domain.ValidPorts;
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(E(XenErrno.ENOSPC), hv.BindIpi(g.Domain, ref ipi));
            var au = new EvtchnAllocUnbound { Dom = DomainId.Self, RemoteDom = 0 };
            Assert.Equal(E(XenErrno.ENOSPC), hv.AllocUnbound(g.Domain, ref au));
        }
        Assert.Equal(1024, valid);
        Assert.Equal(valid, g.Domain.ValidPorts);
        Assert.Equal(ChannelState.Free, hv.GetState(g.Domain, 1024));

        // FIFO: a port closed while LINKED is busy until the guest unlinks it.
        var hv2 = new EventChannelHypervisor();
        using var f = new TestGuest(hv2, 1, vcpus: 1);
        f.InitFifo();
        var a = new EvtchnBindIpi();
        Assert.Equal(0, hv2.BindIpi(f.Domain, ref a));
        Assert.Equal(0, f.Send(a.Port));
        Assert.True(f.GuestLinked(a.Port));
        Assert.Equal(0, hv2.Close(f.Domain, a.Port));
        var b = new EvtchnBindIpi();
        Assert.Equal(0, hv2.BindIpi(f.Domain, ref b));
        Assert.NotEqual(a.Port, b.Port);
        var seen = new List<uint>();
        Assert.True(f.Drain(0, seen));
        Assert.Empty(seen); // closed: its pending bit was cleared
        var c = new EvtchnBindIpi();
        Assert.Equal(0, hv2.BindIpi(f.Domain, ref c));
        Assert.Equal(a.Port, c.Port);
    }

    /// <summary>
    /// XSA-340 (2020): Xen read the count of valid ports and the bucket pointers without memory
    /// barriers, so another CPU could see a port as valid before its bucket. Here buckets are
    /// published with release semantics before the count: threads hammering ports just above the
    /// current allocation while another thread keeps allocating never see a missing bucket.
    /// </summary>
    [Fact]
    public void Xsa340_concurrent_allocation_and_use_of_growing_port_table()
    {
        var hv = new EventChannelHypervisor();
        using var g = new TestGuest(hv, 1, vcpus: 2, maxPorts: 4096);
        using var stop = new CancellationTokenSource();
        var threads = new Threads();
        int failures = 0;
        var readers = Enumerable.Range(0, 2).Select(t => threads.Start(() =>
        {
            var st = new EvtchnStatus { Dom = DomainId.Self };
            while (!stop.IsCancellationRequested)
            {
                uint top = (uint)g.Domain.ValidPorts;
                for (uint port = top > 70 ? top - 70 : 0; port < top + 70; port++)
                {
                    long rc = g.Send(port);
                    st.Port = port;
                    long src = hv.Status(g.Domain, ref st);
                    hv.IsPending(g.Domain, port);
                    hv.Unmask(g.Domain, port);
                    if ((rc != 0 && rc != E(XenErrno.EINVAL)) || (src != 0 && src != E(XenErrno.EINVAL)))
                        Interlocked.Increment(ref failures);
                }
            }
        })).ToArray();
        var ipi = new EvtchnBindIpi { Vcpu = 1 };
        int bound = 0;
        while (hv.BindIpi(g.Domain, ref ipi) == 0)
            bound++;
        stop.Cancel();
        Assert.True(Threads.JoinAll(readers, TimeSpan.FromSeconds(30)));
        Assert.Equal(4095, bound);
        Assert.Equal(0, failures);
        Assert.Empty(threads.Errors);
    }

    /// <summary>
    /// XSA-343 (2020): several races in Xen's event channel code: EVTCHNOP_reset changing the port
    /// operations and limits under senders that held no lock, the FIFO code reading a port's queue
    /// without locking the queue the event was last on, and the locking of interdomain send
    /// against close. Here sends, unmasks, priority and vCPU changes run against a remote domain
    /// that keeps closing, re-binding, resetting and re-initialising FIFO: no exception, no
    /// deadlock, and every frame reference is dropped at the end.
    /// </summary>
    [Fact]
    public void Xsa343_reset_and_close_race_with_send_priority_and_vcpu_changes()
    {
        var hv = new EventChannelHypervisor();
        using var a = new TestGuest(hv, 1, vcpus: 2);
        using var b = new TestGuest(hv, 2, vcpus: 2);
        const int Channels = 8;
        var local = new uint[Channels];
        var remote = new uint[Channels];
        var gate = new Lock();
        void Rebind()
        {
            for (int i = 0; i < Channels; i++)
            {
                remote[i] = b.AllocUnbound(1);
                local[i] = a.BindInterdomain(2, remote[i]);
            }
        }
        b.InitFifo();
        Rebind();

        using var stop = new CancellationTokenSource();
        var threads = new Threads();
        var errors = threads.Errors;
        Thread Run(Action<Random> body, int seed) => threads.Start(() =>
        {
            var rng = new Random(seed);
            try
            {
                while (!stop.IsCancellationRequested)
                    body(rng);
            }
            catch (Exception e)
            {
                errors.Enqueue(e);
            }
        });
        var tasks = new[]
        {
            Run(r => a.Send(Volatile.Read(ref local[r.Next(Channels)])), 1),
            Run(r => a.Send(Volatile.Read(ref local[r.Next(Channels)])), 2),
            Run(r => hv.Unmask(b.Domain, Volatile.Read(ref remote[r.Next(Channels)])), 3),
            Run(r => hv.SetPriority(b.Domain, new EvtchnSetPriority { Port = Volatile.Read(ref remote[r.Next(Channels)]), Priority = (uint)r.Next(16) }), 4),
            Run(r => hv.BindVcpu(b.Domain, new EvtchnBindVcpu { Port = Volatile.Read(ref remote[r.Next(Channels)]), Vcpu = (uint)r.Next(2) }), 5),
            Run(r => { lock (gate) { b.Drain(r.Next(2), new List<uint>()); } }, 6),
        };
        for (int round = 0; round < 200; round++)
        {
            lock (gate)
            {
                if (round % 3 == 0)
                {
                    Assert.Equal(0, hv.Reset(b.Domain, DomainId.Self)); // back to 2-level, every port closed
                    NativeClearFifoFrames(b);
                    b.InitFifo();
                }
                else
                {
                    for (int i = 0; i < Channels; i++)
                        hv.Close(b.Domain, remote[i]);
                }
                for (int i = 0; i < Channels; i++)
                    Assert.Equal(0, hv.Close(a.Domain, local[i])); // now unbound: closing frees them
                Rebind();
            }
        }
        stop.Cancel();
        Assert.True(Threads.JoinAll(tasks, TimeSpan.FromSeconds(30)), "deadlock");
        Assert.Empty(errors);
        Assert.Equal(0, hv.Reset(b.Domain, DomainId.Self));
        Assert.Equal(0, b.Frames.TotalReferences);
    }

    // A guest re-initialising FIFO after EVTCHNOP_reset starts from clean pages, as Linux does.
    private static void NativeClearFifoFrames(TestGuest g)
    {
        System.Runtime.InteropServices.NativeMemory.Clear(g.Frames.Page(TestGuest.ControlGfn), 4096);
        System.Runtime.InteropServices.NativeMemory.Clear(g.Frames.Page(TestGuest.FirstArrayGfn), 4096);
    }
}
