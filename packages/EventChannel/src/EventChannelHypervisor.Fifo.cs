using VmmKit.Hypercall;

namespace VmmKit.EventChannel;

// EVTCHNOP_init_control, expand_array, set_priority (xen/common/event_fifo.c).
public sealed partial class EventChannelHypervisor
{
    /// <summary>Size of <c>struct evtchn_fifo_control_block</c>.</summary>
    private const uint ControlBlockSize = 72;

    /// <summary>
    /// <c>EVTCHNOP_init_control</c>: registers <c>op.Vcpu</c>'s control block; the first call switches
    /// the domain to the FIFO ABI (ports already pending keep their pending state). -ENOENT for a
    /// missing vCPU; -EINVAL for an offset not 8-byte aligned or a block crossing the page, a frame
    /// the mapper refuses, a vCPU that already has one, or a domain being destroyed; -ENOSYS when the
    /// domain has no frame mapper.
    /// A failure leaves the domain exactly as it was (XSA-188).
    /// </summary>
    /// <param name="caller">The calling domain.</param>
    /// <param name="op">The argument; <see cref="EvtchnInitControl.LinkBits"/> receives 17.</param>
    /// <returns>0 or a negated errno.</returns>
    public long InitControl(EventChannelDomain caller, ref EvtchnInitControl op)
    {
        ArgumentNullException.ThrowIfNull(caller);
        EventChannelDomain d = caller;
        if (op.Vcpu >= (uint)d.VcpuCount)
            return XenErrno.ENOENT.Negated();
        if ((op.Offset & 7) != 0 || op.Offset > 4096 - ControlBlockSize)
            return XenErrno.EINVAL.Negated();
        if (d.FrameMapper is not { } mapper)
            return XenErrno.ENOSYS.Negated();
        op.LinkBits = FifoEventWord.LinkBits;

        lock (d.EventLock)
        {
            // A vCPU still in this hypercall while DestroyDomain runs: its teardown already dropped the FIFO
            // state, so a mapping now would never be unmapped (Xen's get_free_port: -EINVAL when dying).
            if (d.IsDying)
                return XenErrno.EINVAL.Negated();
            if (d.Fifo is { } existing)
                return existing.MapControlBlock((int)op.Vcpu, op.ControlGfn, op.Offset, mapper);

            var fifo = new FifoAbi(d);
            long rc = fifo.MapControlBlock((int)op.Vcpu, op.ControlGfn, op.Offset, mapper);
            if (rc != 0)
            {
                fifo.Unmap(mapper); // nothing of it was published
                return rc;
            }

            // Switch, wait out 2-level users, then carry the 2-level pending bits over (setup_ports).
            d.SetFifo(fifo);
            Quiesce(d);
            int valid = d.ValidPorts;
            for (uint port = 1; port < (uint)valid; port++)
            {
                Channel chn = d.TryGetChannel(port)!;
                lock (chn.Lock)
                {
                    if (TwoLevelAbi.IsPending(d, port))
                        chn.FifoPending = true;
                    chn.Priority = FifoEventWord.PriorityDefault;
                }
            }
            return 0;
        }
    }

    /// <summary>
    /// <c>EVTCHNOP_expand_array</c>: adds the next event array page (1024 ports). -EOPNOTSUPP before
    /// init_control, -ENOSPC after 128 pages, -EINVAL for a frame the mapper refuses.
    /// </summary>
    /// <param name="caller">The calling domain.</param>
    /// <param name="op">The argument.</param>
    /// <returns>0 or a negated errno.</returns>
    public long ExpandArray(EventChannelDomain caller, in EvtchnExpandArray op)
    {
        ArgumentNullException.ThrowIfNull(caller);
        lock (caller.EventLock)
        {
            if (caller.Fifo is not { } fifo)
                return XenErrno.EOPNOTSUPP.Negated();
            return fifo.AddPage(op.ArrayGfn, caller.FrameMapper!);
        }
    }

    /// <summary>
    /// <c>EVTCHNOP_set_priority</c>: the queue the port's next events go to. In Xen's order: -EINVAL for a
    /// port never allocated, -ENOSYS under the 2-level ABI (which has no priorities), -EACCES for a free or
    /// reserved port, -EINVAL for a priority above 15.
    /// </summary>
    /// <param name="caller">The calling domain.</param>
    /// <param name="op">The argument.</param>
    /// <returns>0 or a negated errno.</returns>
    public long SetPriority(EventChannelDomain caller, in EvtchnSetPriority op)
    {
        ArgumentNullException.ThrowIfNull(caller);
        Channel? chn = caller.TryGetChannel(op.Port);
        if (chn is null)
            return XenErrno.EINVAL.Negated();
        lock (chn.Lock)
        {
            if (caller.Fifo is null)
                return XenErrno.ENOSYS.Negated();
            // Xen 4.17's evtchn_port_set_priority: a port that is not usable (free, reserved) is -EACCES.
            if (!Usable(chn))
                return XenErrno.EACCES.Negated();
            if (op.Priority > FifoEventWord.PriorityMin)
                return XenErrno.EINVAL.Negated();
            chn.Priority = (int)op.Priority;
            return 0;
        }
    }
}
