namespace VmmKit.EventChannel;

/// <summary>
/// Virtual IRQs (<c>VIRQ_*</c>, xen/xen.h). "V." ones are per-vCPU (bound once per vCPU); "G." ones
/// are global (bound on vCPU 0 only and delivered to the domain registered as their handler).
/// </summary>
public enum Virq : uint
{
    /// <summary><c>VIRQ_TIMER</c> (V.): timebase update or requested timeout.</summary>
    Timer = 0,
    /// <summary><c>VIRQ_DEBUG</c> (V.): request to dump debug info.</summary>
    Debug = 1,
    /// <summary><c>VIRQ_CONSOLE</c> (G.): bytes received on the emergency console.</summary>
    Console = 2,
    /// <summary><c>VIRQ_DOM_EXC</c> (G.): exceptional event for some domain.</summary>
    DomExc = 3,
    /// <summary><c>VIRQ_TBUF</c> (G.): trace buffer has records.</summary>
    Tbuf = 4,
    /// <summary><c>VIRQ_DEBUGGER</c> (G.): a domain paused for debugging.</summary>
    Debugger = 6,
    /// <summary><c>VIRQ_XENOPROF</c> (V.): new oprofile sample.</summary>
    Xenoprof = 7,
    /// <summary><c>VIRQ_CON_RING</c> (G.): bytes received on the console ring.</summary>
    ConRing = 8,
    /// <summary><c>VIRQ_PCPU_STATE</c> (G.): physical CPU state changed.</summary>
    PcpuState = 9,
    /// <summary><c>VIRQ_MEM_EVENT</c> (G.): a memory event occurred.</summary>
    MemEvent = 10,
    /// <summary><c>VIRQ_ARGO</c> (G.): Argo message notification.</summary>
    Argo = 11,
    /// <summary><c>VIRQ_ENOMEM</c> (G.): low on heap memory.</summary>
    Enomem = 12,
    /// <summary><c>VIRQ_XENPMU</c> (V.): PMC interrupt.</summary>
    Xenpmu = 13,
    /// <summary><c>VIRQ_ARCH_0</c>: first architecture-specific VIRQ (x86: <c>VIRQ_MCA</c>, global).</summary>
    Arch0 = 16,
    /// <summary><c>VIRQ_ARCH_7</c>: last architecture-specific VIRQ.</summary>
    Arch7 = 23,
}

/// <summary>Rules about <see cref="Virq"/> numbers.</summary>
public static class VirqRules
{
    /// <summary><c>NR_VIRQS</c> (xen/xen.h).</summary>
    public const int Count = 24;

    /// <summary>
    /// Xen's <c>virq_is_global()</c> (xen/common/event_channel.c): TIMER, DEBUG, XENOPROF and
    /// XENPMU are per-vCPU; every other VIRQ (x86's architecture VIRQs included) is global.
    /// </summary>
    /// <param name="virq">A VIRQ below <see cref="Count"/>.</param>
    /// <returns>True for a global VIRQ.</returns>
    public static bool IsGlobal(uint virq) =>
        virq is not ((uint)Virq.Timer or (uint)Virq.Debug or (uint)Virq.Xenoprof or (uint)Virq.Xenpmu);
}
