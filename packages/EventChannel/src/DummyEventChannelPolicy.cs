using VmmKit.Hypercall;

namespace VmmKit.EventChannel;

/// <summary>
/// Xen's default XSM policy for event channels (xen/include/xsm/dummy.h): binding to an unbound
/// port and sending are always allowed (<c>XSM_HOOK</c>); allocating an unbound port in, querying
/// and resetting another domain are <c>XSM_TARGET</c>: allowed to the domain itself, to its device
/// model (<see cref="EventChannelDomain.DeviceModelFor"/>, Xen's <c>d-&gt;target</c>), and to the
/// control domain (<see cref="EventChannelDomain.IsControlDomain"/>); anyone else gets -EPERM.
/// </summary>
public sealed class DummyEventChannelPolicy : IEventChannelPolicy
{
    /// <summary>The shared instance.</summary>
    public static DummyEventChannelPolicy Instance { get; } = new();

    /// <inheritdoc/>
    public long Unbound(EventChannelDomain caller, EventChannelDomain target, ushort remoteDomain) => Target(caller, target);

    /// <inheritdoc/>
    public long Interdomain(EventChannelDomain local, EventChannelDomain remote) => 0;

    /// <inheritdoc/>
    public long Send(EventChannelDomain caller, uint port) => 0;

    /// <inheritdoc/>
    public long Status(EventChannelDomain caller, EventChannelDomain target) => Target(caller, target);

    /// <inheritdoc/>
    public long Reset(EventChannelDomain caller, EventChannelDomain target) => Target(caller, target);

    // xsm_default_action(XSM_TARGET, src, target): self, then d->target (device model), then XSM_PRIV.
    private static long Target(EventChannelDomain caller, EventChannelDomain target)
    {
        ArgumentNullException.ThrowIfNull(caller);
        ArgumentNullException.ThrowIfNull(target);
        if (caller == target)
            return 0;
        if (caller.DeviceModelFor is ushort served && served == target.Id)
            return 0;
        return caller.IsControlDomain ? 0 : XenErrno.EPERM.Negated();
    }
}
