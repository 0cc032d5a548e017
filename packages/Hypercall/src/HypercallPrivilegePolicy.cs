namespace VmmKit.Hypercall;

/// <summary>
/// A table-driven <see cref="IHypercallPolicy{TCaller}"/>: a <see cref="HypercallPrivilege"/> per
/// hypercall with optional per-sub-operation overrides, refusing with -EPERM as Xen's XSM does.
/// The defaults follow Xen's dummy XSM policy (xen/include/xsm/dummy.h): <c>domctl</c>,
/// <c>sysctl</c> and <c>platform_op</c> are privileged; of <c>xen_version</c>,
/// <c>XENVER_commandline</c> and <c>XENVER_build_id</c> are privileged; of <c>console_io</c>,
/// <c>CONSOLEIO_read</c> is privileged while <c>CONSOLEIO_write</c> is open to every domain, as in
/// a Xen built with <c>CONFIG_VERBOSE_DEBUG</c> (guests use it as their first console).
/// Everything else is open. Lookups are array reads; changing the table while vCPUs run is not
/// synchronized.
/// </summary>
/// <typeparam name="TCaller">The hypervisor's type for the calling vCPU or domain.</typeparam>
public sealed class HypercallPrivilegePolicy<TCaller> : IHypercallPolicy<TCaller>
{
    private readonly Func<TCaller, bool> _isPrivileged;
    private readonly HypercallPrivilege[] _levels = new HypercallPrivilege[HypercallDispatcher<TCaller>.TableSize];
    private readonly HypercallPrivilege[]?[] _subOpLevels = new HypercallPrivilege[]?[HypercallDispatcher<TCaller>.TableSize];

    /// <summary>Creates the policy with Xen's default levels.</summary>
    /// <param name="isPrivileged">Whether a caller belongs to a privileged (control) domain.</param>
    public HypercallPrivilegePolicy(Func<TCaller, bool> isPrivileged)
    {
        ArgumentNullException.ThrowIfNull(isPrivileged);
        _isPrivileged = isPrivileged;
        Array.Fill(_levels, HypercallPrivilege.Any);
        Set(HypercallNumber.Domctl, HypercallPrivilege.Privileged);
        Set(HypercallNumber.Sysctl, HypercallPrivilege.Privileged);
        Set(HypercallNumber.PlatformOp, HypercallPrivilege.Privileged);
        SetSubOp(HypercallNumber.XenVersion, (uint)XenVersionCommand.Commandline, HypercallPrivilege.Privileged);
        SetSubOp(HypercallNumber.XenVersion, (uint)XenVersionCommand.BuildId, HypercallPrivilege.Privileged);
        SetSubOp(HypercallNumber.ConsoleIo, (uint)ConsoleIoCommand.Read, HypercallPrivilege.Privileged);
    }

    /// <summary>Sets the level of a whole hypercall (sub-operation overrides still apply).</summary>
    /// <param name="number">The hypercall.</param>
    /// <param name="level">Its level; <see cref="HypercallPrivilege.Inherit"/> means <see cref="HypercallPrivilege.Any"/>.</param>
    public void Set(HypercallNumber number, HypercallPrivilege level)
    {
        int index = Index(number);
        _levels[index] = level == HypercallPrivilege.Inherit ? HypercallPrivilege.Any : level;
    }

    /// <summary>Overrides the level of one sub-operation.</summary>
    /// <param name="number">The hypercall.</param>
    /// <param name="subOp">The sub-operation, below <see cref="HypercallDispatcher{TCaller}.MaxSubOps"/>.</param>
    /// <param name="level">Its level; <see cref="HypercallPrivilege.Inherit"/> removes the override.</param>
    public void SetSubOp(HypercallNumber number, uint subOp, HypercallPrivilege level)
    {
        int index = Index(number);
        if (subOp >= HypercallDispatcher<TCaller>.MaxSubOps)
            throw new ArgumentOutOfRangeException(nameof(subOp));
        HypercallPrivilege[] subs = _subOpLevels[index] ?? [];
        if (subOp >= (uint)subs.Length)
            Array.Resize(ref subs, (int)subOp + 1);
        subs[subOp] = level;
        _subOpLevels[index] = subs;
    }

    /// <summary>The level that applies to a call of <paramref name="op"/> with sub-operation <paramref name="subOp"/>.</summary>
    /// <param name="op">The hypercall number.</param>
    /// <param name="subOp">The sub-operation.</param>
    /// <returns>The effective level.</returns>
    public HypercallPrivilege LevelOf(uint op, uint subOp)
    {
        if (op >= (uint)_levels.Length)
            return HypercallPrivilege.Denied;
        if (_subOpLevels[op] is { } subs && subOp < (uint)subs.Length && subs[subOp] != HypercallPrivilege.Inherit)
            return subs[subOp];
        return _levels[op];
    }

    /// <inheritdoc/>
    public long Authorize(in HypercallCall<TCaller> call) =>
        LevelOf(call.Op, call.SubOp) switch
        {
            HypercallPrivilege.Any => 0,
            HypercallPrivilege.Privileged when _isPrivileged(call.Caller) => 0,
            _ => XenErrno.EPERM.Negated(),
        };

    private static int Index(HypercallNumber number)
    {
        if ((uint)number >= HypercallDispatcher<TCaller>.TableSize)
            throw new ArgumentOutOfRangeException(nameof(number));
        return (int)number;
    }
}
