namespace VmmKit.GrantTable;

/// <summary>
/// What the hypervisor tells <see cref="GrantTableHypercalls{TCaller}"/> about a caller: its domain's grant state,
/// and whether it may act on other domains' tables (Xen's XSM_TARGET: the control domain).
/// </summary>
/// <typeparam name="TCaller">The hypervisor's type for the calling vCPU or domain.</typeparam>
public interface IGrantTableCallerResolver<in TCaller>
{
    /// <summary>The caller's domain grant state, or null when it has none (the hypercall then returns -ENOSYS).</summary>
    /// <param name="caller">The caller.</param>
    /// <returns>The domain.</returns>
    GrantDomain? GetDomain(TCaller caller);

    /// <summary>True when the caller may query or set up other domains' tables.</summary>
    /// <param name="caller">The caller.</param>
    /// <returns>Whether the caller is privileged.</returns>
    bool IsPrivileged(TCaller caller);
}
