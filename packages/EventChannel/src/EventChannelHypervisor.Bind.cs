using VmmKit.Hypercall;

namespace VmmKit.EventChannel;

// EVTCHNOP_alloc_unbound, bind_interdomain, bind_virq, bind_ipi, bind_pirq, bind_vcpu
// (xen/common/event_channel.c).
public sealed partial class EventChannelHypervisor
{
    /// <summary>
    /// <c>EVTCHNOP_alloc_unbound</c>: allocates a port in <c>op.Dom</c> that <c>op.RemoteDom</c> may
    /// bind to. -ESRCH for a missing domain, -ENOSPC when no port is left, then -EPERM from the policy.
    /// </summary>
    /// <param name="caller">The calling domain.</param>
    /// <param name="op">The argument; <see cref="EvtchnAllocUnbound.Port"/> receives the port.</param>
    /// <returns>0 or a negated errno.</returns>
    public long AllocUnbound(EventChannelDomain caller, ref EvtchnAllocUnbound op)
    {
        ArgumentNullException.ThrowIfNull(caller);
        EventChannelDomain? d = ByAnyId(caller, op.Dom);
        if (d is null)
            return XenErrno.ESRCH.Negated();
        lock (d.EventLock)
        {
            long port = d.GetFreePort();
            if (port < 0)
                return port;
            // Xen 4.17's evtchn_alloc_unbound asks XSM only once it has a port (-ENOSPC wins over -EPERM);
            // a refused port stays free.
            long rc = Policy.Unbound(caller, d, op.RemoteDom);
            if (rc != 0)
                return rc;
            Channel chn = d.TryGetChannel((uint)port)!;
            lock (chn.Lock)
            {
                InitPort(chn);
                chn.UnboundRemoteDomain = op.RemoteDom == DomainId.Self ? caller.Id : op.RemoteDom;
                chn.State = ChannelState.Unbound;
            }
            op.Port = (uint)port;
            return 0;
        }
    }

    /// <summary>
    /// <c>EVTCHNOP_bind_interdomain</c>: connects a new port of <paramref name="caller"/> to an unbound
    /// port of <c>op.RemoteDom</c> allocated for the caller, then sets the new port pending (events
    /// sent on the unbound end were dropped). -ESRCH, -ENOSPC, -EINVAL for a port that is not unbound for the
    /// caller, then the policy's answer.
    /// </summary>
    /// <param name="caller">The calling domain.</param>
    /// <param name="op">The argument; <see cref="EvtchnBindInterdomain.LocalPort"/> receives the port.</param>
    /// <returns>0 or a negated errno.</returns>
    public long BindInterdomain(EventChannelDomain caller, ref EvtchnBindInterdomain op)
    {
        ArgumentNullException.ThrowIfNull(caller);
        EventChannelDomain ld = caller;
        EventChannelDomain? rd = op.RemoteDom == DomainId.Self ? ld : FindDomain(op.RemoteDom);
        if (rd is null)
            return XenErrno.ESRCH.Negated();

        LockDomains(ld, rd);
        try
        {
            if (rd.IsDying)
                return XenErrno.ESRCH.Negated();
            long lport = ld.GetFreePort();
            if (lport < 0)
                return lport;
            Channel lchn = ld.TryGetChannel((uint)lport)!;
            Channel? rchn = rd.TryGetChannel(op.RemotePort);
            if (rchn is null || rchn.State != ChannelState.Unbound || rchn.UnboundRemoteDomain != ld.Id)
                return XenErrno.EINVAL.Negated();
            // Xen 4.17's evtchn_bind_interdomain asks XSM last, once both ports are known.
            long rc = Policy.Interdomain(ld, rd);
            if (rc != 0)
                return rc;

            LockChannels(lchn, rchn);
            try
            {
                InitPort(lchn);
                lchn.RemoteDomain = rd;
                lchn.RemotePort = op.RemotePort;
                lchn.State = ChannelState.Interdomain;
                rchn.RemoteDomain = ld;
                rchn.RemotePort = (uint)lport;
                rchn.State = ChannelState.Interdomain;
                // "We may have lost notifications on the remote unbound port": always signal the new port.
                ld.SetPending(lchn.NotifyVcpu, lchn);
            }
            finally
            {
                UnlockChannels(lchn, rchn);
            }
            op.LocalPort = (uint)lport;
            return 0;
        }
        finally
        {
            UnlockDomains(ld, rd);
        }
    }

    /// <summary>
    /// <c>EVTCHNOP_bind_virq</c>: -EINVAL for a VIRQ at or above <c>NR_VIRQS</c> or a global VIRQ on a
    /// vCPU other than 0, -ENOENT for a missing vCPU, -EEXIST when the VIRQ is already bound on it.
    /// </summary>
    /// <param name="caller">The calling domain.</param>
    /// <param name="op">The argument; <see cref="EvtchnBindVirq.Port"/> receives the port.</param>
    /// <returns>0 or a negated errno.</returns>
    public long BindVirq(EventChannelDomain caller, ref EvtchnBindVirq op)
    {
        ArgumentNullException.ThrowIfNull(caller);
        EventChannelDomain d = caller;
        uint virq = op.Virq;
        if (virq >= VirqRules.Count)
            return XenErrno.EINVAL.Negated();
        if (VirqRules.IsGlobal(virq) && op.Vcpu != 0)
            return XenErrno.EINVAL.Negated();
        if (op.Vcpu >= (uint)d.VcpuCount)
            return XenErrno.ENOENT.Negated();
        VcpuEventState v = d.Vcpu((int)op.Vcpu);
        lock (d.EventLock)
        {
            if (Volatile.Read(ref v.VirqToPort[virq]) != 0)
                return XenErrno.EEXIST.Negated();
            long port = d.GetFreePort();
            if (port < 0)
                return port;
            Channel chn = d.TryGetChannel((uint)port)!;
            lock (chn.Lock)
            {
                InitPort(chn);
                chn.Virq = virq;
                chn.NotifyVcpu = (int)op.Vcpu;
                chn.State = ChannelState.Virq;
            }
            Volatile.Write(ref v.VirqToPort[virq], (uint)port);
            op.Port = (uint)port;
            return 0;
        }
    }

    /// <summary><c>EVTCHNOP_bind_ipi</c>: a port that notifies <c>op.Vcpu</c> of the caller; -ENOENT for a missing vCPU.</summary>
    /// <param name="caller">The calling domain.</param>
    /// <param name="op">The argument; <see cref="EvtchnBindIpi.Port"/> receives the port.</param>
    /// <returns>0 or a negated errno.</returns>
    public long BindIpi(EventChannelDomain caller, ref EvtchnBindIpi op)
    {
        ArgumentNullException.ThrowIfNull(caller);
        EventChannelDomain d = caller;
        if (op.Vcpu >= (uint)d.VcpuCount)
            return XenErrno.ENOENT.Negated();
        lock (d.EventLock)
        {
            long port = d.GetFreePort();
            if (port < 0)
                return port;
            Channel chn = d.TryGetChannel((uint)port)!;
            lock (chn.Lock)
            {
                InitPort(chn);
                chn.NotifyVcpu = (int)op.Vcpu;
                chn.State = ChannelState.Ipi;
            }
            op.Port = (uint)port;
            return 0;
        }
    }

    /// <summary>
    /// <c>EVTCHNOP_bind_pirq</c>: the domains of this package have no PIRQs (their <c>nr_pirqs</c> is 0;
    /// Xen 4.17's domain_create gives every domU <c>nr_static_irqs + extra_domU_irqs</c>), so every PIRQ is
    /// out of range: -EINVAL, as Xen's <c>pirq &gt;= d-&gt;nr_pirqs</c> check answers.
    /// </summary>
    /// <param name="caller">The calling domain.</param>
    /// <param name="op">The argument (unchanged).</param>
    /// <returns>-EINVAL.</returns>
    public long BindPirq(EventChannelDomain caller, ref EvtchnBindPirq op)
    {
        ArgumentNullException.ThrowIfNull(caller);
        return XenErrno.EINVAL.Negated();
    }

    /// <summary>
    /// <c>EVTCHNOP_bind_vcpu</c>: notify another vCPU from now on. Allowed for unbound, interdomain
    /// and global-VIRQ ports; -EINVAL for IPIs, per-vCPU VIRQs and closed ports, -ENOENT for a missing vCPU.
    /// </summary>
    /// <param name="caller">The calling domain.</param>
    /// <param name="op">The argument.</param>
    /// <returns>0 or a negated errno.</returns>
    public long BindVcpu(EventChannelDomain caller, in EvtchnBindVcpu op)
    {
        ArgumentNullException.ThrowIfNull(caller);
        EventChannelDomain d = caller;
        if (op.Vcpu >= (uint)d.VcpuCount)
            return XenErrno.ENOENT.Negated();
        lock (d.EventLock)
        {
            Channel? chn = d.TryGetChannel(op.Port);
            if (chn is null)
                return XenErrno.EINVAL.Negated();
            lock (chn.Lock)
            {
                switch (chn.State)
                {
                    case ChannelState.Virq when VirqRules.IsGlobal(chn.Virq):
                    case ChannelState.Unbound:
                    case ChannelState.Interdomain:
                    case ChannelState.Pirq:
                        chn.NotifyVcpu = (int)op.Vcpu;
                        return 0;
                    default:
                        return XenErrno.EINVAL.Negated();
                }
            }
        }
    }

    // evtchn_port_init: a newly bound port starts at the default priority on vCPU 0.
    private static void InitPort(Channel chn)
    {
        chn.Priority = FifoEventWord.PriorityDefault;
        chn.NotifyVcpu = 0;
        chn.FifoPending = false;
    }
}
