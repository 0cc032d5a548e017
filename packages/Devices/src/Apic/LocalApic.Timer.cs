namespace VmmKit.Devices;

// The APIC timer (SDM Vol. 3A §11.5.4): it counts guest TSC ticks divided by the divide configuration, so a
// 1 GHz emulated TSC gives a 1 GHz timer base. Expiry is computed, never ticked: the VMM asks NextTimerExpiry.
public sealed partial class LocalApic
{
    /// <summary>IA32_TSC_DEADLINE (SDM Vol. 3A §11.5.4.1).</summary>
    public const uint TscDeadlineMsr = 0x6E0;

    private bool _timerArmed;
    private ulong _timerStart, _timerStartCount, _tscDeadline;

    /// <summary>The timer's mode from the LVT timer entry (in the reserved encoding 11b the timer does not run).</summary>
    public LocalApicTimerMode TimerMode
    {
        get { lock (_lock) return TimerModeLocked; }
    }

    /// <summary>
    /// The guest TSC value at which the timer next expires, or null when it is not armed. A masked timer
    /// still reports its expiry: the count runs, only the interrupt is suppressed. A VMM programs the
    /// VMX-preemption timer (or a host timer) for <see cref="NextTimerInterrupt"/>, which leaves out the
    /// expiries that raise nothing, and calls <see cref="AdvanceTime"/> (or any of the interrupt queries)
    /// when it is reached.
    /// </summary>
    public ulong? NextTimerExpiry
    {
        get
        {
            AdvanceTime();
            lock (_lock)
            {
                if (TimerModeLocked == LocalApicTimerMode.TscDeadline)
                    return _tscDeadline == 0 ? null : _tscDeadline;
                return _timerArmed ? ExpiryLocked : null;
            }
        }
    }

    /// <summary>
    /// The shortest period of a periodic timer, in guest TSC ticks; 0 (the default) keeps the period the guest programs.
    /// Initial count 1 with divide by 1 asks for an expiry every tick, a storm of host timers and VM exits a guest
    /// causes with four stores: Xen makes a periodic timer's period at least 100 µs (xen/arch/x86/hvm/vpt.c
    /// <c>create_periodic_time</c>), and a VMM facing hostile guests sets this to 100 µs of its guest TSC. As in Xen,
    /// the first expiry after the initial count is written is not delayed; each reload after it waits until a whole
    /// minimum period has passed, the current count holding at the initial count meanwhile.
    /// </summary>
    public ulong MinimumTimerPeriod { get; set; }

    /// <summary>
    /// The guest TSC value at which the timer's next expiry makes something new pending, or null when no expiry can:
    /// the timer is not armed, its LVT entry is masked, the APIC is disabled, or its vector already waits in the IRR
    /// (an expiry sets that bit again, which changes nothing). This is what a VMM waits for: the VMX-preemption timer
    /// before a VM entry, the wake-up of a halted vCPU. <see cref="NextTimerExpiry"/> is the expiry itself.
    /// </summary>
    public ulong? NextTimerInterrupt
    {
        get
        {
            ulong? expiry = NextTimerExpiry;
            lock (_lock)
            {
                uint lvt = _lvt[LvtTimer];
                byte vector = (byte)lvt;
                bool raises = (lvt & LvtMask) == 0 && IsEnabledLocked
                    && (vector >= 16 ? !IsSet(_irr, vector) : (_esrPending & EsrReceiveIllegalVector) == 0);
                return raises ? expiry : null;
            }
        }
    }

    /// <summary>
    /// Brings the timer up to the clock: an expiry that has passed delivers the LVT timer vector
    /// (unless masked) once, however many periods elapsed (periods missed while the vCPU did not run
    /// are coalesced, as Xen's vlapic does), re-arms a periodic timer and disarms the others.
    /// </summary>
    public void AdvanceTime()
    {
        bool pending = false;
        lock (_lock)
        {
            ulong now = _clock.Tsc;
            if (TimerModeLocked == LocalApicTimerMode.TscDeadline)
            {
                if (_tscDeadline != 0 && now >= _tscDeadline)
                {
                    _tscDeadline = 0;
                    pending = FireTimerLocked();
                }
            }
            else if (_timerArmed && now >= ExpiryLocked)
            {
                ulong expiry = ExpiryLocked;
                pending = FireTimerLocked();
                ulong count = (ulong)_initialCount * Divisor;
                ulong period = Math.Max(count, MinimumTimerPeriod);
                ulong periods = count == 0 ? 0 : ((now - expiry) / period) + 1;
                if (TimerModeLocked == LocalApicTimerMode.Periodic && count != 0 && periods <= (ulong.MaxValue - expiry) / period)
                {
                    // The next count down ends a whole period (at least MinimumTimerPeriod) after the last expiry due;
                    // a next expiry past the clock's end stops the timer instead of wrapping to the past.
                    _timerStart = expiry + (periods * period) - count;
                    _timerStartCount = _initialCount;
                }
                else
                {
                    _timerArmed = false;
                }
            }
        }

        if (pending)
            Host?.InterruptPending(this);
    }

    private LocalApicTimerMode TimerModeLocked => (LocalApicTimerMode)((_lvt[LvtTimer] >> 17) & 3);

    // One-shot and periodic are the modes the initial count runs in (Xen 4.17's vlapic_update_timer).
    private bool CountsLocked => TimerModeLocked is LocalApicTimerMode.OneShot or LocalApicTimerMode.Periodic;

    // Divide configuration bits 3,1,0 (SDM Vol. 3A Figure 11-10): 000 -> 2, 001 -> 4, ... 110 -> 128, 111 -> 1.
    private uint Divisor
    {
        get
        {
            uint code = ((_divideConfig & 8) >> 1) | (_divideConfig & 3);
            return code == 7 ? 1u : 2u << (int)code;
        }
    }

    // Saturates at the clock's end: a count that wrapped would lie in the past and fire at every query.
    private ulong ExpiryLocked
    {
        get
        {
            ulong ticks = _timerStartCount * Divisor;
            return _timerStart > ulong.MaxValue - ticks ? ulong.MaxValue : _timerStart + ticks;
        }
    }

    private bool FireTimerLocked()
    {
        uint lvt = _lvt[LvtTimer];
        if ((lvt & LvtMask) != 0)
            return false;
        AcceptLocked((byte)lvt, false, out bool pending);
        return pending;
    }

    // Current count (SDM Vol. 3A §11.5.4): counts down at the divided rate; 0 when stopped and in TSC-deadline mode.
    private uint CurrentCountLocked()
    {
        if (TimerModeLocked == LocalApicTimerMode.TscDeadline || !_timerArmed)
            return 0;
        ulong now = _clock.Tsc;
        if (now >= ExpiryLocked)
            return 0;                                     // expired, not yet processed
        if (now < _timerStart)
            return (uint)_timerStartCount;                // reloaded, waiting for MinimumTimerPeriod
        ulong elapsed = (now - _timerStart) / Divisor;
        return (uint)(_timerStartCount - elapsed);
    }

    // Writing the initial count starts (or, with 0, stops) the timer; ignored in TSC-deadline mode (SDM Vol. 3A §11.5.4.1)
    // and in the reserved mode 11b (Xen 4.17's vlapic_reg_write, APIC_TMICT).
    private void WriteInitialCountLocked(uint value)
    {
        if (!CountsLocked)
            return;
        _initialCount = value;
        _timerArmed = value != 0;
        _timerStart = _clock.Tsc;
        _timerStartCount = value;
    }

    // A new divisor applies from the current count on.
    private void WriteDivideConfigLocked(uint value)
    {
        if (_timerArmed && TimerModeLocked != LocalApicTimerMode.TscDeadline)
        {
            uint current = CurrentCountLocked();
            _divideConfig = value;
            _timerStart = _clock.Tsc;
            _timerStartCount = current;
            return;
        }

        _divideConfig = value;
    }

    // A mode change into or out of TSC-deadline mode disarms the timer and clears the initial count (SDM Vol. 3A
    // §11.5.4.1); the reserved mode 11b stops the timer and keeps the count, which does not run again until it is
    // written (Xen 4.17's vlapic_update_timer); one-shot <-> periodic keeps counting.
    private void WriteLvtTimerLocked(uint value)
    {
        var before = TimerModeLocked;
        _lvt[LvtTimer] = value;
        var after = TimerModeLocked;
        if (before != after && (before == LocalApicTimerMode.TscDeadline || after == LocalApicTimerMode.TscDeadline))
        {
            StopTimerLocked();
            _initialCount = 0;
        }
        else if (after == LocalApicTimerMode.Reserved)
        {
            StopTimerLocked();
        }
    }

    private void StopTimerLocked()
    {
        _timerArmed = false;
        _tscDeadline = 0;
        _timerStart = _timerStartCount = 0;
    }

    // IA32_TSC_DEADLINE: reads 0 and ignores writes outside TSC-deadline mode; 0 disarms (SDM Vol. 3A §11.5.4.1).
    private ulong ReadTscDeadlineLocked() => TimerModeLocked == LocalApicTimerMode.TscDeadline ? _tscDeadline : 0;

    private void WriteTscDeadlineLocked(ulong value)
    {
        if (TimerModeLocked == LocalApicTimerMode.TscDeadline)
            _tscDeadline = value;
    }
}
