namespace VmmKit.EventChannel;

/// <summary>
/// The XSM hooks Xen consults for event channels (xen/include/xsm/xsm.h: <c>xsm_evtchn_*</c>).
/// Each returns 0 to allow or a negated errno (normally -EPERM) to refuse. As in Xen 4.17, each is asked
/// after the checks of the ports: <see cref="Unbound"/> and <see cref="Interdomain"/> once the new port is
/// allocated, with the domains' event locks held, so an implementation must not call back into the hypervisor.
/// </summary>
public interface IEventChannelPolicy
{
    /// <summary><c>xsm_evtchn_unbound</c>: may <paramref name="caller"/> allocate an unbound port in <paramref name="target"/> for <paramref name="remoteDomain"/>?</summary>
    /// <param name="caller">The calling domain.</param>
    /// <param name="target">The domain the port is allocated in.</param>
    /// <param name="remoteDomain">The domain that will be allowed to bind.</param>
    /// <returns>0 or a negated errno.</returns>
    long Unbound(EventChannelDomain caller, EventChannelDomain target, ushort remoteDomain);

    /// <summary><c>xsm_evtchn_interdomain</c>: may <paramref name="local"/> connect to <paramref name="remote"/>?</summary>
    /// <param name="local">The binding domain.</param>
    /// <param name="remote">The domain owning the unbound port.</param>
    /// <returns>0 or a negated errno.</returns>
    long Interdomain(EventChannelDomain local, EventChannelDomain remote);

    /// <summary><c>xsm_evtchn_send</c>: may <paramref name="caller"/> send on its port? Called on the hot path.</summary>
    /// <param name="caller">The sending domain.</param>
    /// <param name="port">The port.</param>
    /// <returns>0 or a negated errno.</returns>
    long Send(EventChannelDomain caller, uint port);

    /// <summary><c>xsm_evtchn_status</c>: may <paramref name="caller"/> query a port of <paramref name="target"/>?</summary>
    /// <param name="caller">The calling domain.</param>
    /// <param name="target">The domain owning the port.</param>
    /// <returns>0 or a negated errno.</returns>
    long Status(EventChannelDomain caller, EventChannelDomain target);

    /// <summary><c>xsm_evtchn_reset</c>: may <paramref name="caller"/> reset <paramref name="target"/>'s ports?</summary>
    /// <param name="caller">The calling domain.</param>
    /// <param name="target">The domain to reset.</param>
    /// <returns>0 or a negated errno.</returns>
    long Reset(EventChannelDomain caller, EventChannelDomain target);
}
