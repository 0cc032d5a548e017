using VmmKit.Hypercall;

namespace VmmKit.EventChannel;

/// <summary>
/// Xen's event channels for a whole machine (xen/common/event_channel.c): the domains, the XSM
/// policy, and every EVTCHNOP as a method taking the calling domain. Methods return 0 or a
/// positive value on success and Xen's negated errno on failure, never throw for guest input, and
/// may be called from any thread. <see cref="EventChannelHypercalls{TCaller}"/> wires them to a
/// <see cref="HypercallDispatcher{TCaller}"/>.
/// </summary>
public sealed partial class EventChannelHypervisor
{
    private readonly EventChannelDomain?[] _domains = new EventChannelDomain?[DomainId.FirstReserved];
    private readonly EventChannelDomain?[] _globalVirqHandlers = new EventChannelDomain?[VirqRules.Count];
    private readonly Lock _domainsLock = new();
    private long _nextOrdinal;

    /// <summary>Creates a hypervisor with the default (dummy XSM) policy.</summary>
    /// <param name="policy">The XSM policy; <see cref="DummyEventChannelPolicy"/> when null.</param>
    public EventChannelHypervisor(IEventChannelPolicy? policy = null)
    {
        Policy = policy ?? DummyEventChannelPolicy.Instance;
    }

    /// <summary>The XSM policy consulted by each operation.</summary>
    public IEventChannelPolicy Policy { get; }

    /// <summary>Creates a domain's event channel state (Xen's <c>evtchn_init</c>): port 0 is reserved, the ABI is 2-level.</summary>
    /// <param name="options">The domain's id, vCPUs, upcall and limits.</param>
    /// <returns>The domain.</returns>
    /// <exception cref="ArgumentException">The id is reserved or in use, or a count is out of range.</exception>
    public EventChannelDomain CreateDomain(EventChannelDomainOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(options.Upcall);
        if (options.Id >= DomainId.FirstReserved)
            throw new ArgumentException($"domain id {options.Id} is reserved", nameof(options));
        if (options.VcpuCount is < 1 or > 4096)
            throw new ArgumentException("a domain has 1 to 4096 vCPUs", nameof(options));
        if (options.MaxPorts is < 1 or > FifoEventWord.NrChannels)
            throw new ArgumentException($"MaxPorts is 1 to {FifoEventWord.NrChannels}", nameof(options));
        lock (_domainsLock)
        {
            if (_domains[options.Id] is not null)
                throw new ArgumentException($"domain {options.Id} exists", nameof(options));
            var d = new EventChannelDomain(this, options, ++_nextOrdinal);
            lock (d.EventLock)
            {
                d.AllocatePort(0);
                d.TryGetChannel(0)!.State = ChannelState.Reserved;
            }
            Volatile.Write(ref _domains[options.Id], d);
            return d;
        }
    }

    /// <summary>
    /// Tears a domain's event channels down (Xen's <c>evtchn_destroy</c>): every port is closed (remote
    /// ends become unbound), the FIFO pages are unmapped and the id is free again.
    /// </summary>
    /// <param name="domain">The domain.</param>
    public void DestroyDomain(EventChannelDomain domain)
    {
        ArgumentNullException.ThrowIfNull(domain);
        lock (_domainsLock)
        {
            if (_domains[domain.Id] != domain)
                return;
            // Under the event lock: no allocation or bind into the domain starts after this, and any
            // in progress finishes first, so the close-all below sees every port.
            lock (domain.EventLock)
                domain.IsDying = true;
            Volatile.Write(ref _domains[domain.Id], null);
            for (int v = 0; v < _globalVirqHandlers.Length; v++)
            {
                if (_globalVirqHandlers[v] == domain)
                    _globalVirqHandlers[v] = null;
            }
        }
        CloseAllAndDropFifo(domain);
    }

    /// <summary>The domain with id <paramref name="id"/> (Xen's <c>rcu_lock_domain_by_id</c>), or null.</summary>
    /// <param name="id">A domain id.</param>
    /// <returns>The domain or null.</returns>
    public EventChannelDomain? FindDomain(ushort id) => id < DomainId.FirstReserved ? Volatile.Read(ref _domains[id]) : null;

    // rcu_lock_domain_by_any_id: DOMID_SELF is the caller.
    private EventChannelDomain? ByAnyId(EventChannelDomain caller, ushort id) => id == DomainId.Self ? caller : FindDomain(id);

    /// <summary>
    /// Sets the domain that receives a global VIRQ (Xen's <c>XEN_DOMCTL_set_virq_handler</c>); by
    /// default nobody does until a control domain is set with this method.
    /// </summary>
    /// <param name="virq">A global VIRQ.</param>
    /// <param name="domain">The handler domain, or null for none.</param>
    /// <exception cref="ArgumentException"><paramref name="virq"/> is not a global VIRQ.</exception>
    public void SetGlobalVirqHandler(Virq virq, EventChannelDomain? domain)
    {
        if ((uint)virq >= VirqRules.Count || !VirqRules.IsGlobal((uint)virq))
            throw new ArgumentException($"{virq} is not a global VIRQ", nameof(virq));
        lock (_domainsLock)
            _globalVirqHandlers[(int)virq] = domain;
    }

    private static void LockDomains(EventChannelDomain a, EventChannelDomain b) => LockOrder.Enter(a.EventLock, a.Ordinal, b.EventLock, b.Ordinal);

    private static void UnlockDomains(EventChannelDomain a, EventChannelDomain b) => LockOrder.Exit(a.EventLock, b.EventLock);

    // double_evtchn_lock: two channels in a fixed order.
    private static void LockChannels(Channel a, Channel b) => LockOrder.Enter(a.Lock, a.Ordinal, b.Lock, b.Ordinal);

    private static void UnlockChannels(Channel a, Channel b) => LockOrder.Exit(a.Lock, b.Lock);
}
