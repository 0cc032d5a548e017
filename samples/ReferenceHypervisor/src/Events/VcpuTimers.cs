using VmmKit.EventChannel;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// A vCPU's timers in guest system time (nanoseconds, <see cref="GuestTime.SystemTime"/>): the singleshot timer of
/// VCPUOP_set_singleshot_timer and set_timer_op, which sends VIRQ_TIMER when it expires (Xen's
/// <c>singleshot_timer_fn</c>), and the SCHEDOP_poll timeout. Checked at every VM exit and before every VM entry;
/// the slice's VMX-preemption timer is programmed so that the next deadline ends the slice on time.
/// </summary>
internal sealed class VcpuTimers
{
    /// <summary>The singleshot deadline, or null when the timer is stopped.</summary>
    public ulong? Singleshot { get; set; }

    /// <summary>Most ports one SCHEDOP_poll may list (Xen's <c>do_poll</c>).</summary>
    public const int MaxPollPorts = 128;

    private readonly uint[] _pollPorts = new uint[MaxPollPorts];
    private int _pollCount;

    /// <summary>The ports of a SCHEDOP_poll in progress (empty when not polling).</summary>
    public ReadOnlySpan<uint> PollPorts => _pollPorts.AsSpan(0, _pollCount);

    /// <summary>Starts a SCHEDOP_poll on <paramref name="ports"/> (at most <see cref="MaxPollPorts"/>) until <paramref name="timeout"/>.</summary>
    public void StartPoll(ReadOnlySpan<uint> ports, ulong? timeout)
    {
        ports.CopyTo(_pollPorts);
        _pollCount = ports.Length;
        PollTimeout = timeout;
        Polling = true;
    }

    /// <summary>The SCHEDOP_poll timeout, or null for none.</summary>
    public ulong? PollTimeout { get; set; }

    /// <summary>True while the vCPU is blocked in SCHEDOP_poll.</summary>
    public bool Polling { get; private set; }

    /// <summary>The earliest deadline, or null.</summary>
    public ulong? NextDeadline => (Singleshot, Polling ? PollTimeout : null) switch
    {
        ({ } a, { } b) => Math.Min(a, b),
        ({ } a, null) => a,
        (null, { } b) => b,
        _ => null,
    };

    /// <summary>Fires what is due at <paramref name="now"/>: the singleshot timer sends VIRQ_TIMER to the vCPU.</summary>
    public void FireDue(VirtualCpu vcpu, ulong now)
    {
        if (Singleshot is { } t && t <= now)
        {
            Singleshot = null;
            vcpu.Domain.Events.Hypervisor.SendVirq(vcpu.Domain.Events, vcpu.Id, Virq.Timer);
        }
    }

    /// <summary>
    /// True when a blocked vCPU should wake: SCHEDOP_block and HLT while an event is pending; SCHEDOP_poll when a polled
    /// port is pending, the poll timed out, or the vCPU was kicked (an upcall newly marked pending, Xen's <c>vcpu_kick</c>).
    /// </summary>
    public bool ShouldWake(VirtualCpu vcpu, ulong now)
    {
        if (!Polling)
            return vcpu.UpcallPending || Devices.VcpuApic.HasPendingInterrupt(vcpu);
        if (vcpu.Kicked)
            return true;
        if (PollTimeout is { } t && t <= now)
            return true;
        foreach (uint port in PollPorts)
        {
            if (vcpu.Domain.Events.Hypervisor.IsPending(vcpu.Domain.Events, port))
                return true;
        }

        return false;
    }

    /// <summary>The vCPU woke: a poll in progress ends.</summary>
    public void Woken()
    {
        Polling = false;
        _pollCount = 0;
        PollTimeout = null;
    }
}
