using VmmKit.Hypercall;

namespace VmmKit.ReferenceHypervisor.Cli;

/// <summary>
/// The process exit status of <c>vmmkit-hv</c>: it follows the guest's SCHEDOP_shutdown reason
/// (xen/include/public/sched.h), so scripts can tell a clean poweroff from a crash.
/// </summary>
internal static class ExitCodes
{
    /// <summary>The guest powered off (SHUTDOWN_poweroff).</summary>
    public const int Poweroff = 0;

    /// <summary>The hypervisor could not start: bad arguments, unreadable or invalid kernel, not enough memory.</summary>
    public const int StartFailure = 1;

    /// <summary>SHUTDOWN_reboot.</summary>
    public const int Reboot = 2;

    /// <summary>SHUTDOWN_suspend.</summary>
    public const int Suspend = 3;

    /// <summary>SHUTDOWN_crash: the guest reported its own crash.</summary>
    public const int GuestCrash = 4;

    /// <summary>SHUTDOWN_watchdog.</summary>
    public const int Watchdog = 5;

    /// <summary>SHUTDOWN_soft_reset.</summary>
    public const int SoftReset = 6;

    /// <summary>A shutdown reason Xen does not define.</summary>
    public const int UnknownReason = 7;

    /// <summary>The hypervisor crashed the domain (triple fault, wild memory access, unhandled exit, instruction budget).</summary>
    public const int DomainCrashed = 8;

    /// <summary>The table printed by --help.</summary>
    public const string HelpText =
        "Exit status: 0 poweroff, 1 could not start (bad arguments or kernel), 2 reboot, 3 suspend, " +
        "4 the guest reported a crash (SHUTDOWN_crash), 5 watchdog, 6 soft_reset, 7 unknown shutdown reason, " +
        "8 the hypervisor crashed the domain (triple fault, bad memory access, unhandled exit, --max-instructions).";

    /// <summary>The exit status for a stopped domain.</summary>
    public static int For(Domain domain) => domain.State switch
    {
        DomainState.Shutdown => domain.ShutdownReason switch
        {
            ShutdownReason.Poweroff => Poweroff,
            ShutdownReason.Reboot => Reboot,
            ShutdownReason.Suspend => Suspend,
            ShutdownReason.Crash => GuestCrash,
            ShutdownReason.Watchdog => Watchdog,
            ShutdownReason.SoftReset => SoftReset,
            _ => UnknownReason,
        },
        _ => DomainCrashed,
    };
}
