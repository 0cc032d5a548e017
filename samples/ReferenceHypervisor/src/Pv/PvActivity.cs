namespace VmmKit.ReferenceHypervisor.Pv;

/// <summary>
/// What the in-process Dom0 services are doing, for the scheduler: the number of events taken and not yet finished
/// (a service unmasks its port when done), and a signal each time a service notifies a guest. The deterministic
/// scheduler skips guest time when every vCPU is blocked; with services on other threads it first waits for them, so a
/// guest waiting for a XenStore reply or a disk response gets it before its timeout, as on real hardware.
/// </summary>
/// <remarks>
/// Work a service holds — an event delivered to Dom0 and not yet served (<paramref name="holdsWork"/>), or one it took
/// and has not finished — is waited for however long it takes (up to <see cref="HeldWorkBound.Limit"/> of continuous
/// holding, against a hung service or a count that never goes back to zero): on a loaded host a backend's task may run seconds
/// after the guest's notification, and skipping guest time meanwhile would show the guest a disk request that took
/// minutes. Signs of work that may follow (recent activity,
/// <paramref name="mayHaveWork"/>: e.g. request bytes on a store ring xenstored has not read yet) are waited for only up
/// to the caller's limit.
/// </remarks>
/// <param name="holdsWork">True while Dom0 holds an event it has not served (e.g. its host domain's events in hand).</param>
/// <param name="mayHaveWork">True while a service may still produce an answer.</param>
internal sealed class PvActivity(Func<bool>? holdsWork = null, Func<bool>? mayHaveWork = null)
{
    private readonly SemaphoreSlim _answered = new(0, int.MaxValue);
    private int _busy;
    private long _lastActivity;
    private long _answers;
    private readonly HeldWorkBound _held = new();

    /// <summary>A service took an event.</summary>
    public void Started()
    {
        Interlocked.Increment(ref _busy);
        Touch();
    }

    /// <summary>A service finished an event (unmasked its port).</summary>
    public void Finished()
    {
        if (Interlocked.Decrement(ref _busy) < 0)
            Interlocked.Exchange(ref _busy, 0);
        Touch();
    }

    /// <summary>A service notified a guest (after the event was marked pending).</summary>
    public void Answered()
    {
        Touch();
        Interlocked.Increment(ref _answers);
        if (_answered.CurrentCount < 1024)
            _answered.Release();
    }

    /// <summary>
    /// How many notifications the services sent so far. The scheduler reads it before it looks at the vCPUs and passes it
    /// to <see cref="WaitForServices"/>, so that a notification sent after that look is never waited for.
    /// </summary>
    public long Answers => Volatile.Read(ref _answers);

    /// <summary>The XenStore daemon or a backend did something that may still produce output (e.g. a reply being written).</summary>
    public void Touch() => Volatile.Write(ref _lastActivity, Environment.TickCount64);

    /// <summary>Whether a service holds work it has not answered: an event taken and not finished, or delivered and not yet taken.</summary>
    public bool HoldsWork => Volatile.Read(ref _busy) > 0 || holdsWork?.Invoke() == true;

    /// <summary>
    /// Every vCPU is blocked: waits while a service holds work (at most <see cref="HeldWorkBound.Limit"/>), and while one was
    /// active in the last <paramref name="quiet"/> or may have work, at most <paramref name="limit"/>. True when a guest
    /// was notified since the scheduler read <paramref name="seen"/> from <see cref="Answers"/> (the scheduler looks
    /// again): at once when that happened before this call, since a vCPU the notification woke may already run.
    /// </summary>
    public bool WaitForServices(long seen, TimeSpan quiet, TimeSpan limit)
    {
        // The semaphore only wakes the wait below; the count says whether anything was answered.
        while (_answered.CurrentCount > 0)
            _answered.Wait(0);
        long end = Environment.TickCount64 + (long)limit.TotalMilliseconds;
        while (true)
        {
            if (Answers != seen)
                return true;
            long now = Environment.TickCount64;
            bool held = HoldsWork;
            // Held work is measured from when the holding began, across waits, so that work stuck forever ends in time.
            long heldEnd = Math.Max(end, _held.Observe(held, now));
            bool busy = held || now - Volatile.Read(ref _lastActivity) < (long)quiet.TotalMilliseconds || mayHaveWork?.Invoke() == true;
            if (!busy || now >= (held ? heldEnd : end))
                return false;
            _answered.Wait(TimeSpan.FromMilliseconds(Math.Min(quiet.TotalMilliseconds, (held ? heldEnd : end) - now)));
        }
    }
}
