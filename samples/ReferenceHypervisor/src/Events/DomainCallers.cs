using VmmKit.EventChannel;
using VmmKit.GrantTable;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// The small caller maps VmmKit.EventChannel and VmmKit.GrantTable ask for: a calling vCPU's domain state in each
/// package. Only the control domain (domid 0 of <c>vmmkit-hv host</c>) is privileged.
/// </summary>
internal sealed class DomainCallers : IEventChannelCallerMap<VirtualCpu>, IGrantTableCallerResolver<VirtualCpu>
{
    /// <inheritdoc/>
    public EventChannelDomain DomainOf(VirtualCpu caller) => caller.Domain.Events;

    /// <inheritdoc/>
    public GrantDomain? GetDomain(VirtualCpu caller) => caller.Domain.Grants;

    /// <inheritdoc/>
    public bool IsPrivileged(VirtualCpu caller) => caller.Domain.IsPrivileged;
}
