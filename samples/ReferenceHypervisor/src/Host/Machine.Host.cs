using VmmKit.EventChannel;
using VmmKit.ReferenceHypervisor.Host;

namespace VmmKit.ReferenceHypervisor;

/// <summary>The parts of the machine a host with a control domain uses (src/Host).</summary>
internal sealed partial class Machine
{
    /// <summary>The control domain's channel, served between slices; null for the quick path.</summary>
    public IMachineHost? Host { get; set; }

    private readonly HeldWorkBound _hostHeld = new();

    /// <summary>
    /// Whether the control domain holds work a blocked guest may wait for (<see cref="IMachineHost.HoldsWork"/>), for at
    /// most <see cref="HeldWorkBound.Limit"/> of continuous holding: guest time does not skip ahead meanwhile, so a guest never
    /// sees a disk request that Dom0 served in a second of wall clock take minutes of its own time.
    /// </summary>
    internal bool HostHoldsWork()
    {
        long now = Environment.TickCount64;
        return now < _hostHeld.Observe(Host is { } host && host.HoldsWork, now);
    }

    /// <summary>The control domain's foreign mappings (frames a destroyed domain leaves to them); null without one.</summary>
    internal ForeignMappings? Foreign { get; set; }

    /// <summary>The live domain with id <paramref name="id"/>, or null (Xen's <c>rcu_lock_domain_by_id</c>).</summary>
    public Domain? FindDomain(ushort id)
    {
        foreach (var d in _domains)
        {
            if (d.Id == id)
                return d;
        }

        return null;
    }

    /// <summary>Adds a domain the toolstack created (or domain 0) to the scheduler.</summary>
    internal void AddDomain(Domain domain)
    {
        _domains.Add(domain);
        if (domain.Id >= _nextDomainId)
            _nextDomainId = (ushort)(domain.Id + 1);
    }

    /// <summary>
    /// Whether domain id <paramref name="id"/> is in use: by a live domain, or by a destroyed one whose frames another
    /// domain still maps (a zombie in Xen, which keeps the domain, and its id, until <c>free_domheap_pages</c> frees its
    /// last page), so that a new domain is never charged for the old one's frames.
    /// </summary>
    internal bool IsDomainIdTaken(ushort id) =>
        FindDomain(id) is not null || Memory.FramesOwnedBy(new VmmKit.Ept.FrameOwner(id)) != 0;

    /// <summary>The next free domid from 1 (Xen's <c>domid_alloc</c> in XEN_DOMCTL_createdomain), or null when none is left.</summary>
    internal ushort? AllocateDomainId()
    {
        for (int i = 0; i < Hypercall.DomainId.FirstReserved - 1; i++)
        {
            ushort id = (ushort)(((_nextDomainId - 1 + i) % (Hypercall.DomainId.FirstReserved - 1)) + 1);
            if (!IsDomainIdTaken(id))
                return id;
        }

        return null;
    }

    /// <summary>Removes a destroyed domain from the scheduler and releases it.</summary>
    internal void RemoveDomain(Domain domain)
    {
        StopThreadsOf(domain);   // threaded scheduler: the domain's vCPU threads end before its processors go
        _domains.Remove(domain);
        domain.Dispose();
    }

    /// <summary>A domain shut down or crashed: VIRQ_DOM_EXC tells the control domain (Xen's <c>domain_shutdown</c>).</summary>
    internal void NotifyDomainException() => Events.SendGlobalVirq(Virq.DomExc);
}
