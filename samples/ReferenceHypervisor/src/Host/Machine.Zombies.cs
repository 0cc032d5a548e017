using VmmKit.Dom0.Xen.Abi;
using VmmKit.Ept;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// Destroyed domains whose frames another domain still maps. Xen keeps such a domain in its domain list, dead
/// (<c>DOMDYING_dead</c>), until <c>free_domheap_pages</c> frees its last page (xen/common/domain.c: <c>domain_kill</c>,
/// <c>domain_destroy</c>), so getdomaininfo and getdomaininfolist go on reporting it with <c>XEN_DOMINF_dying</c> and
/// the pages it has left (<c>xl list</c> shows it as a "(null)" domain), and destroying it again succeeds.
/// </summary>
internal sealed partial class Machine
{
    private readonly Dictionary<ushort, XenDomctlGetDomainInfo> _zombies = new();

    /// <summary>
    /// Keeps what getdomaininfo said of a domain just destroyed while any of its frames is left (mapped by another
    /// domain): its vCPUs no longer run, the rest stays as it was when it died.
    /// </summary>
    internal void KeepIfZombie(XenDomctlGetDomainInfo lastInfo)
    {
        if (Memory.FramesOwnedBy(new FrameOwner(lastInfo.Domain)) == 0)
            return;
        lastInfo.Flags = (lastInfo.Flags & ~(uint)DomainInfoFlags.Running) | (uint)DomainInfoFlags.Dying;
        lock (_zombies)
            _zombies[lastInfo.Domain] = lastInfo;
    }

    /// <summary>
    /// The zombie domains, each with the pages it has left; one whose last page went since is forgotten (its id is
    /// then free, <see cref="IsDomainIdTaken"/>).
    /// </summary>
    internal List<XenDomctlGetDomainInfo> Zombies()
    {
        var alive = new List<XenDomctlGetDomainInfo>();
        lock (_zombies)
        {
            foreach (ushort id in _zombies.Keys.ToArray())
            {
                // Gone with its last page; or its id given to a new domain by a caller that bypassed
                // AllocateDomainId (the frames counted are then the new domain's too).
                ulong pages = Memory.FramesOwnedBy(new FrameOwner(id));
                if (pages == 0 || FindDomain(id) is not null)
                {
                    _zombies.Remove(id);
                    continue;
                }

                XenDomctlGetDomainInfo info = _zombies[id];
                info.TotPages = pages;
                alive.Add(info);
            }
        }

        return alive;
    }

    /// <summary>Whether <paramref name="id"/> names a zombie domain.</summary>
    internal bool IsZombie(ushort id) => FindDomain(id) is null && Zombies().Exists(z => z.Domain == id);
}
