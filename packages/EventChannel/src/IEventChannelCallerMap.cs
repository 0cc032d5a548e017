namespace VmmKit.EventChannel;

/// <summary>Maps the hypervisor's caller type (a vCPU) to its event channel domain; implemented by the VMM.</summary>
/// <typeparam name="TCaller">The caller type of the hypervisor's <c>HypercallDispatcher&lt;TCaller&gt;</c>.</typeparam>
public interface IEventChannelCallerMap<TCaller>
{
    /// <summary>The calling vCPU's domain.</summary>
    /// <param name="caller">The caller.</param>
    /// <returns>Its domain.</returns>
    EventChannelDomain DomainOf(TCaller caller);
}
