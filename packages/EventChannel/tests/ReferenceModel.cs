using VmmKit.Hypercall;

namespace VmmKit.EventChannel.Tests;

/// <summary>
/// A deliberately simple model of event channels for the model-based tests: per port its state,
/// binding and the three guest-visible bits (pending, masked and, for FIFO, linked), with Xen's
/// errno rules written out one by one. Ports live in one bucket of 64 (all valid), of which
/// <see cref="MaxPorts"/> may be allocated.
/// </summary>
internal sealed class ReferenceModel
{
    public const int ValidPorts = 64, MaxPorts = 12, Vcpus = 2;
    public static readonly ushort[] DomainIds = [0, 1, 5];
    public static readonly ushort[] DomainArgs = [DomainId.Self, 0, 1, 5, 7];

    public sealed class Port
    {
        public ChannelState State;
        public ushort UnboundRemote;
        public int RemoteDomain; // index into Domains
        public uint RemotePort;
        public uint Virq;
        public int Notify;
        public bool Pending, Masked, Linked;
    }

    public sealed class Domain
    {
        public required ushort Id;
        public required int Index;
        public bool Control => Id == 0;
        public bool Fifo;
        public readonly Port[] Ports = Enumerable.Range(0, ValidPorts).Select(_ => new Port()).ToArray();
        public readonly uint[,] VirqToPort = new uint[Vcpus, VirqRules.Count];
    }

    public readonly Domain[] Domains;

    public ReferenceModel(bool fifo)
    {
        Domains = DomainIds.Select((id, i) => new Domain { Id = id, Index = i, Fifo = fifo }).ToArray();
        foreach (var d in Domains)
            d.Ports[0].State = ChannelState.Reserved;
    }

    private static long E(XenErrno e) => e.Negated();

    private Domain? Find(Domain caller, ushort arg) =>
        arg == DomainId.Self ? caller : Domains.FirstOrDefault(d => d.Id == arg);

    private static long GetFree(Domain d)
    {
        for (int p = 0; p < MaxPorts; p++)
        {
            if (d.Ports[p].State == ChannelState.Free && !(d.Fifo && d.Ports[p].Linked))
                return p;
        }
        return E(XenErrno.ENOSPC);
    }

    private static void Bind(Port p, ChannelState state, int notify = 0)
    {
        p.State = state;
        p.Notify = notify;
    }

    public static void SetPending(Domain d, uint port)
    {
        Port p = d.Ports[port];
        p.Pending = true;
        if (d.Fifo && !p.Masked)
            p.Linked = true;
    }

    public long AllocUnbound(Domain c, ushort domArg, ushort remoteArg, out uint port)
    {
        port = 0;
        Domain? d = Find(c, domArg);
        if (d is null)
            return E(XenErrno.ESRCH);
        long free = GetFree(d);
        if (free < 0)
            return free;
        if (d != c && !c.Control)
            return E(XenErrno.EPERM); // evtchn_alloc_unbound asks XSM once it has a port
        port = (uint)free;
        Bind(d.Ports[port], ChannelState.Unbound);
        d.Ports[port].UnboundRemote = remoteArg == DomainId.Self ? c.Id : remoteArg;
        return 0;
    }

    public long BindInterdomain(Domain c, ushort remoteArg, uint rport, out uint lport)
    {
        lport = 0;
        Domain? rd = Find(c, remoteArg);
        if (rd is null)
            return E(XenErrno.ESRCH);
        long free = GetFree(c);
        if (free < 0)
            return free;
        if (rport >= ValidPorts || rd.Ports[rport].State != ChannelState.Unbound || rd.Ports[rport].UnboundRemote != c.Id)
            return E(XenErrno.EINVAL);
        lport = (uint)free;
        Port l = c.Ports[lport], r = rd.Ports[rport];
        Bind(l, ChannelState.Interdomain);
        l.RemoteDomain = rd.Index;
        l.RemotePort = rport;
        r.State = ChannelState.Interdomain;
        r.RemoteDomain = c.Index;
        r.RemotePort = lport;
        SetPending(c, lport);
        return 0;
    }

    public long BindVirq(Domain c, uint virq, uint vcpu, out uint port)
    {
        port = 0;
        if (virq >= VirqRules.Count || (VirqRules.IsGlobal(virq) && vcpu != 0))
            return E(XenErrno.EINVAL);
        if (vcpu >= Vcpus)
            return E(XenErrno.ENOENT);
        if (c.VirqToPort[vcpu, virq] != 0)
            return E(XenErrno.EEXIST);
        long free = GetFree(c);
        if (free < 0)
            return free;
        port = (uint)free;
        Bind(c.Ports[port], ChannelState.Virq, (int)vcpu);
        c.Ports[port].Virq = virq;
        c.VirqToPort[vcpu, virq] = port;
        return 0;
    }

    public long BindIpi(Domain c, uint vcpu, out uint port)
    {
        port = 0;
        if (vcpu >= Vcpus)
            return E(XenErrno.ENOENT);
        long free = GetFree(c);
        if (free < 0)
            return free;
        port = (uint)free;
        Bind(c.Ports[port], ChannelState.Ipi, (int)vcpu);
        return 0;
    }

    public long Close(Domain c, uint port)
    {
        if (port >= ValidPorts)
            return E(XenErrno.EINVAL);
        Port p = c.Ports[port];
        switch (p.State)
        {
            case ChannelState.Free:
            case ChannelState.Reserved:
                return E(XenErrno.EINVAL);
            case ChannelState.Virq:
                for (int v = 0; v < Vcpus; v++)
                {
                    if (c.VirqToPort[v, p.Virq] == port)
                        c.VirqToPort[v, p.Virq] = 0;
                }
                break;
            case ChannelState.Interdomain:
                Port peer = Domains[p.RemoteDomain].Ports[p.RemotePort];
                peer.State = ChannelState.Unbound;
                peer.UnboundRemote = c.Id;
                break;
        }
        p.Pending = false;
        p.State = ChannelState.Free;
        p.Notify = 0;
        return 0;
    }

    public long Send(Domain c, uint port)
    {
        if (port >= ValidPorts)
            return E(XenErrno.EINVAL);
        Port p = c.Ports[port];
        switch (p.State)
        {
            case ChannelState.Interdomain:
                SetPending(Domains[p.RemoteDomain], p.RemotePort);
                return 0;
            case ChannelState.Ipi:
                SetPending(c, port);
                return 0;
            case ChannelState.Unbound:
                return 0;
            default:
                return E(XenErrno.EINVAL);
        }
    }

    public long Status(Domain c, ushort domArg, uint port, out EvtchnStatus status)
    {
        status = default;
        Domain? d = Find(c, domArg);
        if (d is null)
            return E(XenErrno.ESRCH);
        if (port >= ValidPorts)
            return E(XenErrno.EINVAL);
        if (d != c && !c.Control)
            return E(XenErrno.EPERM); // evtchn_status asks XSM after the port lookup
        Port p = d.Ports[port];
        status.Vcpu = (uint)p.Notify;
        switch (p.State)
        {
            case ChannelState.Unbound:
                status.Status = (uint)EventChannelStatusCode.Unbound;
                status.U.Dom = p.UnboundRemote;
                break;
            case ChannelState.Interdomain:
                status.Status = (uint)EventChannelStatusCode.Interdomain;
                status.U.Dom = Domains[p.RemoteDomain].Id;
                status.U.Port = p.RemotePort;
                break;
            case ChannelState.Virq:
                status.Status = (uint)EventChannelStatusCode.Virq;
                status.U.Virq = p.Virq;
                break;
            case ChannelState.Ipi:
                status.Status = (uint)EventChannelStatusCode.Ipi;
                break;
            default:
                status.Status = (uint)EventChannelStatusCode.Closed;
                break;
        }
        return 0;
    }

    public long BindVcpu(Domain c, uint port, uint vcpu)
    {
        if (vcpu >= Vcpus)
            return E(XenErrno.ENOENT);
        if (port >= ValidPorts)
            return E(XenErrno.EINVAL);
        Port p = c.Ports[port];
        if (p.State is ChannelState.Unbound or ChannelState.Interdomain || (p.State == ChannelState.Virq && VirqRules.IsGlobal(p.Virq)))
        {
            p.Notify = (int)vcpu;
            return 0;
        }
        return E(XenErrno.EINVAL);
    }

    public long Unmask(Domain c, uint port)
    {
        if (port >= ValidPorts)
            return E(XenErrno.EINVAL);
        Port p = c.Ports[port];
        if (p.State is ChannelState.Free or ChannelState.Reserved)
            return 0; // evtchn_port_unmask: only a usable port
        p.Masked = false;
        if (p.Pending)
            SetPending(c, port);
        return 0;
    }

    public long SetPriority(Domain c, uint port, uint priority)
    {
        if (port >= ValidPorts)
            return E(XenErrno.EINVAL);
        if (!c.Fifo)
            return E(XenErrno.ENOSYS);
        if (c.Ports[port].State is ChannelState.Free or ChannelState.Reserved)
            return E(XenErrno.EACCES); // evtchn_port_set_priority: only a usable port
        return priority > 15 ? E(XenErrno.EINVAL) : 0;
    }

    public long Reset(Domain c, ushort domArg)
    {
        Domain? d = Find(c, domArg);
        if (d is null)
            return E(XenErrno.ESRCH);
        if (d != c && !c.Control)
            return E(XenErrno.EPERM);
        if (d != c)
            return E(XenErrno.EINVAL); // never paused in these runs
        for (uint p = 1; p < ValidPorts; p++)
            Close(d, p);
        return 0;
    }

    public void SendVirq(Domain d, int vcpu, uint virq)
    {
        uint port = d.VirqToPort[vcpu, virq];
        if (port != 0 && d.Ports[port].State == ChannelState.Virq && d.Ports[port].Virq == virq)
            SetPending(d, port);
    }

    /// <summary>The guest drains every vCPU: pending unmasked ports are handled; FIFO queues end empty.</summary>
    public SortedSet<uint> Drain(Domain d)
    {
        var delivered = new SortedSet<uint>();
        for (uint port = 0; port < ValidPorts; port++)
        {
            Port p = d.Ports[port];
            if (p.Pending && !p.Masked)
            {
                delivered.Add(port);
                p.Pending = false;
            }
            p.Linked = false;
        }
        return delivered;
    }

    /// <summary>The guest's unmask (Linux): clear locally when nothing is pending, else EVTCHNOP_unmask.</summary>
    public void GuestUnmask(Domain d, uint port)
    {
        Port p = d.Ports[port];
        if (!p.Masked)
            return;
        if (p.Pending)
            Unmask(d, port);
        else
            p.Masked = false;
    }
}
