namespace VmmKit.Hypercall;

/// <summary>
/// Decides whether a caller may make a hypercall: the place for privilege checks (Xen's XSM
/// hooks, e.g. the dummy policy's <c>XSM_PRIV</c> for domctl and sysctl). The dispatcher asks it
/// before every registered handler runs, including each entry of a multicall.
/// </summary>
/// <typeparam name="TCaller">The hypervisor's type for the calling vCPU or domain.</typeparam>
public interface IHypercallPolicy<TCaller>
{
    /// <summary>Authorizes one call.</summary>
    /// <param name="call">The call (number, sub-operation, arguments, caller).</param>
    /// <returns>0 to allow; otherwise the negated errno the guest gets (normally -EPERM), and the handler does not run.</returns>
    long Authorize(in HypercallCall<TCaller> call);
}
