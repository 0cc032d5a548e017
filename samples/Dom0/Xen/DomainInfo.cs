namespace VmmKit.Dom0.Xen;

/// <summary>One domain as XEN_DOMCTL_getdomaininfo reports it (libxenctrl's <c>xc_dominfo_t</c>).</summary>
/// <param name="Domid">The domain id.</param>
/// <param name="Dying">XEN_DOMINF_dying.</param>
/// <param name="Shutdown">XEN_DOMINF_shutdown.</param>
/// <param name="Paused">XEN_DOMINF_paused.</param>
/// <param name="Blocked">XEN_DOMINF_blocked.</param>
/// <param name="Running">XEN_DOMINF_running.</param>
/// <param name="ShutdownReason">The SHUTDOWN_* code when <paramref name="Shutdown"/>.</param>
/// <param name="TotalPages">Pages the domain holds (tot_pages).</param>
/// <param name="MaxPages">Its limit (max_pages).</param>
/// <param name="CpuTimeNanoseconds">CPU time used.</param>
/// <param name="OnlineVcpus">nr_online_vcpus.</param>
/// <param name="MaxVcpuId">max_vcpu_id.</param>
/// <param name="Handle">The toolstack's UUID for the domain.</param>
public sealed record DomainInfo(ushort Domid, bool Dying, bool Shutdown, bool Paused, bool Blocked, bool Running,
    uint ShutdownReason, ulong TotalPages, ulong MaxPages, ulong CpuTimeNanoseconds, uint OnlineVcpus, uint MaxVcpuId, Guid Handle)
{
    /// <summary>The state letters of <c>xl list</c>: r b p s c d (running, blocked, paused, shutdown, crashed, dying).</summary>
    public string StateLetters =>
        $"{(Running ? 'r' : '-')}{(Blocked ? 'b' : '-')}{(Paused ? 'p' : '-')}{(Shutdown && ShutdownReason != 3 ? 's' : '-')}" +
        $"{(Shutdown && ShutdownReason == 3 ? 'c' : '-')}{(Dying ? 'd' : '-')}";
}
