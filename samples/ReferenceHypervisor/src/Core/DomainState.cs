namespace VmmKit.ReferenceHypervisor;

/// <summary>Life cycle of a domain.</summary>
internal enum DomainState
{
    /// <summary>At least one vCPU can run.</summary>
    Running,

    /// <summary>Every vCPU waits for an event (SCHEDOP_block or HLT with interrupts enabled).</summary>
    Blocked,

    /// <summary>The guest asked to stop (SCHEDOP_shutdown); <see cref="Domain.ShutdownReason"/> says why.</summary>
    Shutdown,

    /// <summary>The hypervisor stopped the guest (triple fault, unhandled exit, ...); <see cref="Domain.CrashReport"/> says why.</summary>
    Crashed,
}
