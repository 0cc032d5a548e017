using VmmKit.EventChannel;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// A vCPU's timers in guest system time (nanoseconds, <see cref="GuestTime.SystemTime"/>): the singleshot timer of
/// VCPUOP_set_singleshot_timer and set_timer_op, which sends VIRQ_TIMER when it expires (Xen's
/// <c>singleshot_timer_fn</c>), and the SCHEDOP_poll timeout. Checked at every VM exit and before every VM entry;
/// the slice's VMX-preemption timer is programmed so that the next deadline ends the slice on time. The vCPU's own thread
/// changes them; other threads (siblings, the threaded scheduler) read <see cref="NextDeadline"/>, so the state is locked.
/// </summary>
internal sealed class VcpuTimers
{
    private readonly Lock _lock = new();
    private ulong? _singleshot;
    private ulong? _pollTimeout;
    private bool _polling;

    /// <summary>The singleshot deadline, or null when the timer is stopped.</summary>
    public ulong? Singleshot
    {
        get { lock (_lock) return _singleshot; }
        set { lock (_lock) _singleshot = value; }
    }

    /// <summary>Most ports one SCHEDOP_poll may list (Xen's <c>do_poll</c>).</summary>
    public const int MaxPollPorts = 128;

    private readonly uint[] _pollPorts = new uint[MaxPollPorts];
    private int _pollCount;

    /// <summary>The ports of a SCHEDOP_poll in progress (empty when not polling).</summary>
    public ReadOnlySpan<uint> PollPorts => _pollPorts.AsSpan(0, _pollCount);

    /// <summary>Starts a SCHEDOP_poll on <paramref name="ports"/> (at most <see cref="MaxPollPorts"/>) until <paramref name="timeout"/>.</summary>
    public void StartPoll(ReadOnlySpan<uint> ports, ulong? timeout)
    {
        lock (_lock)
        {
            ports.CopyTo(_pollPorts);
            _pollCount = ports.Length;
            _pollTimeout = timeout;
            _polling = true;
        }
    }

    /// <summary>The SCHEDOP_poll timeout, or null for none.</summary>
    public ulong? PollTimeout
    {
        get { lock (_lock) return _pollTimeout; }
        set { lock (_lock) _pollTimeout = value; }
    }

    /// <summary>True while the vCPU is blocked in SCHEDOP_poll.</summary>
    public bool Polling
    {
        get { lock (_lock) return _polling; }
    }

    /// <summary>The earliest deadline, or null.</summary>
    public ulong? NextDeadline
    {
        get
        {
            lock (_lock)
            {
                return (_singleshot, _polling ? _pollTimeout : null) switch
                {
                    ({ } a, { } b) => Math.Min(a, b),
                    ({ } a, null) => a,
                    (null, { } b) => b,
                    _ => null,
                };
            }
        }
    }

    /// <summary>Fires what is due at <paramref name="now"/>: the singleshot timer sends VIRQ_TIMER to the vCPU.</summary>
    public void FireDue(VirtualCpu vcpu, ulong now)
    {
        lock (_lock)
        {
            if (_singleshot is not { } t || t > now)
                return;
            _singleshot = null;
        }

        vcpu.Domain.Events.Hypervisor.SendVirq(vcpu.Domain.Events, vcpu.Id, Virq.Timer);
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
        lock (_lock)
        {
            _polling = false;
            _pollCount = 0;
            _pollTimeout = null;
        }
    }
}
