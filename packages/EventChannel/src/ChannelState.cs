namespace VmmKit.EventChannel;

/// <summary>The states of a port (Xen's <c>ECS_*</c>, xen/include/xen/sched.h).</summary>
public enum ChannelState
{
    /// <summary><c>ECS_FREE</c>: available for allocation.</summary>
    Free = 0,
    /// <summary><c>ECS_RESERVED</c>: port 0, never usable.</summary>
    Reserved = 1,
    /// <summary><c>ECS_UNBOUND</c>: allocated, waiting for a remote domain to bind.</summary>
    Unbound = 2,
    /// <summary><c>ECS_INTERDOMAIN</c>: connected to a port of another (or the same) domain.</summary>
    Interdomain = 3,
    /// <summary><c>ECS_PIRQ</c>: bound to a physical IRQ (never entered: no domain here has physical IRQs).</summary>
    Pirq = 4,
    /// <summary><c>ECS_VIRQ</c>: bound to a virtual IRQ.</summary>
    Virq = 5,
    /// <summary><c>ECS_IPI</c>: a virtual IPI within the domain.</summary>
    Ipi = 6,
}
