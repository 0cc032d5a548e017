using VmmKit.Hypercall;

namespace VmmKit.EventChannel;

// EVTCHNOP_close, send, status, unmask, reset and the hypervisor's own senders (VIRQs, poll).
public sealed partial class EventChannelHypervisor
{
    /// <summary>
    /// <c>EVTCHNOP_close</c>: frees a port of <paramref name="caller"/>; an interdomain peer becomes
    /// unbound (for the caller's domain). -EINVAL for a port never allocated, free or reserved.
    /// </summary>
    /// <param name="caller">The calling domain.</param>
    /// <param name="port">The port.</param>
    /// <returns>0 or a negated errno.</returns>
    public long Close(EventChannelDomain caller, uint port)
    {
        ArgumentNullException.ThrowIfNull(caller);
        return CloseCore(caller, port);
    }

    // evtchn_close(d1, port1): d1's event lock, plus the peer domain's when the port is interdomain.
    private static long CloseCore(EventChannelDomain d1, uint port1)
    {
        EventChannelDomain? d2 = null;
        while (true)
        {
            EventChannelDomain locked2 = d2 ?? d1;
            LockDomains(d1, locked2);
            try
            {
                Channel? chn1 = d1.TryGetChannel(port1);
                if (chn1 is null)
                    return XenErrno.EINVAL.Negated();
                switch (chn1.State)
                {
                    case ChannelState.Free:
                    case ChannelState.Reserved:
                        return XenErrno.EINVAL.Negated();

                    case ChannelState.Virq:
                        for (int v = 0; v < d1.VcpuCount; v++)
                        {
                            ref uint bound = ref d1.Vcpu(v).VirqToPort[chn1.Virq];
                            if (Volatile.Read(ref bound) == port1)
                                Volatile.Write(ref bound, 0);
                        }
                        break;

                    case ChannelState.Interdomain:
                        EventChannelDomain remote = chn1.RemoteDomain!;
                        if (d2 is null && remote != d1)
                        {
                            d2 = remote; // take both event locks in order, then look again
                            continue;
                        }
                        if (d2 is not null && d2 != remote)
                            return XenErrno.EINVAL.Negated(); // closed and re-bound while unlocked
                        Channel chn2 = remote.TryGetChannel(chn1.RemotePort)!;
                        LockChannels(chn1, chn2);
                        try
                        {
                            chn2.RemoteDomain = null;
                            chn2.UnboundRemoteDomain = d1.Id;
                            chn2.State = ChannelState.Unbound;
                            Free(d1, chn1);
                        }
                        finally
                        {
                            UnlockChannels(chn1, chn2);
                        }
                        return 0;
                }

                lock (chn1.Lock)
                    Free(d1, chn1);
                return 0;
            }
            finally
            {
                UnlockDomains(d1, locked2);
            }
        }
    }

    // evtchn_free: clear the pending state so a re-bound port starts clean; back to vCPU 0.
    private static void Free(EventChannelDomain d, Channel chn)
    {
        d.ClearPending(chn);
        chn.State = ChannelState.Free;
        chn.NotifyVcpu = 0;
        chn.RemoteDomain = null;
        chn.Virq = 0;
    }

    /// <summary>
    /// <c>EVTCHNOP_send</c>: an interdomain port makes the peer pending, an IPI port the bound vCPU;
    /// an unbound port drops the event and succeeds; anything else is -EINVAL. Allocates nothing.
    /// </summary>
    /// <param name="caller">The sending domain.</param>
    /// <param name="port">The caller's port.</param>
    /// <returns>0 or a negated errno.</returns>
    public long Send(EventChannelDomain caller, uint port)
    {
        ArgumentNullException.ThrowIfNull(caller);
        Channel? lchn = caller.TryGetChannel(port);
        if (lchn is null)
            return XenErrno.EINVAL.Negated();
        lchn.Lock.Enter();
        try
        {
            long rc = Policy.Send(caller, port);
            if (rc != 0)
                return rc;
            switch (lchn.State)
            {
                case ChannelState.Interdomain:
                    EventChannelDomain rd = lchn.RemoteDomain!;
                    Channel rchn = rd.TryGetChannel(lchn.RemotePort)!;
                    rd.SetPending(rchn.NotifyVcpu, rchn);
                    EventChannelMetrics.RecordSend(EventChannelMetrics.Interdomain);
                    return 0;
                case ChannelState.Ipi:
                    caller.SetPending(lchn.NotifyVcpu, lchn);
                    EventChannelMetrics.RecordSend(EventChannelMetrics.Ipi);
                    return 0;
                case ChannelState.Unbound:
                    EventChannelMetrics.RecordSend(EventChannelMetrics.Unbound);
                    return 0; // silently dropped, as Xen does
                default:
                    return XenErrno.EINVAL.Negated();
            }
        }
        finally
        {
            lchn.Lock.Exit();
        }
    }

    /// <summary><c>EVTCHNOP_status</c>: -ESRCH, -EINVAL for a port never allocated, then -EPERM from the policy.</summary>
    /// <param name="caller">The calling domain.</param>
    /// <param name="op">The argument; the OUT fields receive the state.</param>
    /// <returns>0 or a negated errno.</returns>
    public long Status(EventChannelDomain caller, ref EvtchnStatus op)
    {
        ArgumentNullException.ThrowIfNull(caller);
        EventChannelDomain? d = ByAnyId(caller, op.Dom);
        if (d is null)
            return XenErrno.ESRCH.Negated();
        // Xen 4.17's evtchn_status: the port is looked up (-EINVAL) before XSM is asked (-EPERM).
        Channel? chn = d.TryGetChannel(op.Port);
        if (chn is null)
            return XenErrno.EINVAL.Negated();
        long rc = Policy.Status(caller, d);
        if (rc != 0)
            return rc;
        lock (d.EventLock)
        {
            lock (chn.Lock)
            {
                switch (chn.State)
                {
                    case ChannelState.Free:
                    case ChannelState.Reserved:
                        op.Status = (uint)EventChannelStatusCode.Closed;
                        break;
                    case ChannelState.Unbound:
                        op.Status = (uint)EventChannelStatusCode.Unbound;
                        op.U.Dom = chn.UnboundRemoteDomain;
                        break;
                    case ChannelState.Interdomain:
                        op.Status = (uint)EventChannelStatusCode.Interdomain;
                        op.U.Dom = chn.RemoteDomain!.Id;
                        op.U.Port = chn.RemotePort;
                        break;
                    case ChannelState.Virq:
                        op.Status = (uint)EventChannelStatusCode.Virq;
                        op.U.Virq = chn.Virq;
                        break;
                    case ChannelState.Ipi:
                        op.Status = (uint)EventChannelStatusCode.Ipi;
                        break;
                    case ChannelState.Pirq:
                        op.Status = (uint)EventChannelStatusCode.Pirq;
                        break;
                }
                op.Vcpu = (uint)chn.NotifyVcpu;
            }
        }
        return 0;
    }

    /// <summary>
    /// <c>EVTCHNOP_unmask</c>: clears the mask and, if the port is pending, delivers it (2-level:
    /// selector bit and upcall; FIFO: relink). -EINVAL for a port never allocated; a port that is free
    /// or reserved is left alone (0), as Xen's <c>evtchn_port_unmask</c> does.
    /// </summary>
    /// <param name="caller">The calling domain.</param>
    /// <param name="port">The port.</param>
    /// <returns>0 or -EINVAL.</returns>
    public long Unmask(EventChannelDomain caller, uint port)
    {
        ArgumentNullException.ThrowIfNull(caller);
        Channel? chn = caller.TryGetChannel(port);
        if (chn is null)
            return XenErrno.EINVAL.Negated();
        lock (chn.Lock)
        {
            if (Usable(chn))
                caller.Unmask(chn);
        }
        return 0;
    }

    /// <summary>
    /// <c>EVTCHNOP_reset</c>: closes every port of <c>dom</c> and returns it to the 2-level ABI.
    /// -ESRCH, -EPERM from the policy, -EINVAL for another domain that its controller has not paused,
    /// -EBUSY while another reset of it runs, -EAGAIN (and still the same ABI) when a racing bind left a
    /// port open. Xen splits a long reset with
    /// the internal <c>EVTCHNOP_reset_cont</c>; this one runs to the end.
    /// </summary>
    /// <param name="caller">The calling domain.</param>
    /// <param name="dom">The domain to reset, or <c>DOMID_SELF</c>.</param>
    /// <returns>0 or a negated errno.</returns>
    public long Reset(EventChannelDomain caller, ushort dom)
    {
        long rc = CheckReset(caller, dom, out EventChannelDomain? found);
        if (rc != 0)
            return rc;
        EventChannelDomain d = found!;

        // evtchn_reset: one reset at a time (d->next_evtchn records the one in progress; -EBUSY for another).
        lock (d.EventLock)
        {
            if (d.ResetInProgress)
                return XenErrno.EBUSY.Negated();
            d.ResetInProgress = true;
        }

        try
        {
            return CloseAllAndDropFifo(d);
        }
        finally
        {
            lock (d.EventLock)
                d.ResetInProgress = false;
        }
    }

    /// <summary>
    /// <c>EVTCHNOP_reset_cont</c> (Xen-internal, 14): the continuation of a preempted reset, which Xen 4.17's
    /// <c>do_event_channel_op</c> takes from a guest like <c>EVTCHNOP_reset</c> (-ESRCH, the policy, -EINVAL for
    /// another domain not paused); <c>evtchn_reset</c> then finds no reset to resume and answers -EBUSY. A reset
    /// here is never preempted, so there is never one to resume.
    /// </summary>
    internal long ResetContinue(EventChannelDomain caller, ushort dom)
    {
        long rc = CheckReset(caller, dom, out _);
        return rc != 0 ? rc : XenErrno.EBUSY.Negated();
    }

    // do_event_channel_op's EVTCHNOP_reset(_cont) checks: the domain (-ESRCH), XSM, and another domain must be
    // paused by its controller (evtchn_reset: -EINVAL).
    private long CheckReset(EventChannelDomain caller, ushort dom, out EventChannelDomain? d)
    {
        ArgumentNullException.ThrowIfNull(caller);
        d = ByAnyId(caller, dom);
        if (d is null)
            return XenErrno.ESRCH.Negated();
        long rc = Policy.Reset(caller, d);
        if (rc != 0)
            return rc;
        return d != caller && !d.IsPausedByController ? XenErrno.EINVAL.Negated() : 0;
    }

    // evtchn_reset / evtchn_destroy: close every port, then leave the FIFO ABI once no thread can
    // still be using its pages, and drop the page references.
    private static long CloseAllAndDropFifo(EventChannelDomain d)
    {
        int valid = d.ValidPorts;
        for (uint port = 1; port < (uint)valid; port++)
            CloseCore(d, port);

        FifoAbi? fifo;
        lock (d.EventLock)
        {
            // XSA-343 ("evtchn_reset() shouldn't succeed with still-open ports"): the loop does not hold the
            // event lock throughout, so another vCPU may have bound a port it had passed; switching ABI
            // under it could leave it beyond the 2-level ports. A dying domain binds nothing (IsDying).
            if (!d.IsDying && HasOpenPorts(d))
                return XenErrno.EAGAIN.Negated();
            fifo = d.Fifo;
            if (fifo is null)
                return 0;
            d.SetFifo(null);
            Quiesce(d);
        }
        fifo.Unmap(d.FrameMapper!);
        return 0;
    }

    // Xen's active_evtchns != 0 (no Xen-internal consumers here); the caller holds the event lock.
    private static bool HasOpenPorts(EventChannelDomain d)
    {
        int valid = d.ValidPorts;
        for (uint port = 1; port < (uint)valid; port++)
        {
            if (d.TryGetChannel(port)!.State != ChannelState.Free)
                return true;
        }
        return false;
    }

    // Every user of a domain's FIFO state holds one of its channels' locks, or (a sender in another
    // domain) the peer channel's lock: taking each once waits them out (XSA-343 class).
    private static void Quiesce(EventChannelDomain d)
    {
        int valid = d.ValidPorts;
        for (uint port = 0; port < (uint)valid; port++)
        {
            Channel chn = d.TryGetChannel(port)!;
            Channel? peer = null;
            lock (chn.Lock)
            {
                if (chn.State == ChannelState.Interdomain)
                    peer = chn.RemoteDomain!.TryGetChannel(chn.RemotePort);
            }
            if (peer is not null && peer != chn)
            {
                // Not nested in chn's lock: channel locks nest only in LockChannels' order.
                lock (peer.Lock) { }
            }
        }
    }

    /// <summary>
    /// Xen's <c>send_guest_vcpu_virq</c>: raises a per-vCPU VIRQ (timer, debug, ...) on one vCPU if
    /// the domain bound it there; otherwise nothing happens. Allocates nothing.
    /// </summary>
    /// <param name="domain">The domain.</param>
    /// <param name="vcpu">The vCPU.</param>
    /// <param name="virq">A per-vCPU VIRQ.</param>
    /// <exception cref="ArgumentOutOfRangeException">The vCPU or VIRQ is out of range (a hypervisor bug, not guest input).</exception>
    public void SendVirq(EventChannelDomain domain, int vcpu, Virq virq)
    {
        ArgumentNullException.ThrowIfNull(domain);
        ArgumentOutOfRangeException.ThrowIfNegative(vcpu);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(vcpu, domain.VcpuCount);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)virq, (uint)VirqRules.Count, nameof(virq));
        SendVirqOn(domain, vcpu, (uint)virq, perVcpu: true);
    }

    /// <summary>
    /// Xen's <c>send_global_virq</c>: raises a global VIRQ (console, dom_exc, ...) in the domain set
    /// with <see cref="SetGlobalVirqHandler"/>, on the vCPU its port is bound to. Allocates nothing.
    /// </summary>
    /// <param name="virq">A global VIRQ.</param>
    public void SendGlobalVirq(Virq virq)
    {
        if ((uint)virq >= VirqRules.Count || !VirqRules.IsGlobal((uint)virq))
            throw new ArgumentException($"{virq} is not a global VIRQ", nameof(virq));
        EventChannelDomain? d = Volatile.Read(ref _globalVirqHandlers[(int)virq]);
        if (d is not null)
            SendVirqOn(d, 0, (uint)virq, perVcpu: false);
    }

    private static void SendVirqOn(EventChannelDomain d, int vcpu, uint virq, bool perVcpu)
    {
        uint port = Volatile.Read(ref d.Vcpu(vcpu).VirqToPort[virq]);
        if (port == 0 || d.TryGetChannel(port) is not { } chn)
            return;
        lock (chn.Lock)
        {
            // The binding may have been closed (and the port reused) since it was read, even for the same VIRQ of
            // another vCPU: Xen reads and sends under the vCPU's virq_lock (send_guest_vcpu_virq).
            if (chn.State != ChannelState.Virq || chn.Virq != virq || (perVcpu && chn.NotifyVcpu != vcpu))
                return;
            d.SetPending(perVcpu ? vcpu : chn.NotifyVcpu, chn);
        }
        EventChannelMetrics.RecordSend(EventChannelMetrics.Virq);
    }

    /// <summary>
    /// Xen's <c>evtchn_port_is_pending</c> as <c>SCHEDOP_poll</c> uses it: false for any port never
    /// allocated (XSA-221), free or reserved, whatever the guest passes.
    /// </summary>
    /// <param name="domain">The domain.</param>
    /// <param name="port">Any port number.</param>
    /// <returns>Whether the port is pending.</returns>
    public bool IsPending(EventChannelDomain domain, uint port)
    {
        ArgumentNullException.ThrowIfNull(domain);
        if (domain.TryGetChannel(port) is not { } chn)
            return false;
        lock (chn.Lock)
            return Usable(chn) && domain.IsPending(chn);
    }

    /// <summary>Xen's <c>evtchn_port_is_masked</c>: true for any port never allocated, free, reserved or without an event word.</summary>
    /// <param name="domain">The domain.</param>
    /// <param name="port">Any port number.</param>
    /// <returns>Whether the port is masked.</returns>
    public bool IsMasked(EventChannelDomain domain, uint port)
    {
        ArgumentNullException.ThrowIfNull(domain);
        if (domain.TryGetChannel(port) is not { } chn)
            return true;
        lock (chn.Lock)
            return !Usable(chn) || domain.IsMasked(chn);
    }

    // evtchn_usable (xen/include/xen/event.h): the port operations touch the guest's words only for a
    // bound port, so a free port (every port once DestroyDomain ran) or port 0 never writes guest memory.
    private static bool Usable(Channel chn) => chn.State > ChannelState.Reserved;

    /// <summary>The state of a port, for the hypervisor's debug output (Xen's <c>'e'</c> key) and tests.</summary>
    /// <param name="domain">The domain.</param>
    /// <param name="port">Any port number.</param>
    /// <returns>The state; <see cref="ChannelState.Free"/> for a port never allocated.</returns>
    public ChannelState GetState(EventChannelDomain domain, uint port)
    {
        ArgumentNullException.ThrowIfNull(domain);
        return domain.TryGetChannel(port)?.State ?? ChannelState.Free;
    }
}
