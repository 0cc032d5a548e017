namespace VmmKit.ReferenceHypervisor.Pv;

/// <summary>
/// What the in-process Dom0 services are doing, for the scheduler: the number of events taken and not yet finished
/// (a service unmasks its port when done), and a signal each time a service notifies a guest. The deterministic
/// scheduler skips guest time when every vCPU is blocked; with services on other threads it first waits for them, so a
/// guest waiting for a XenStore reply or a disk response gets it before its timeout, as on real hardware.
/// </summary>
internal sealed class PvActivity
{
    private readonly SemaphoreSlim _answered = new(0, int.MaxValue);
    private int _busy;
    private long _lastActivity;
    private long _answers;

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

    /// <summary>
    /// Every vCPU is blocked: waits while a service is busy or was active in the last <paramref name="quiet"/>, at most
    /// <paramref name="limit"/>. True when a guest was notified since the scheduler read <paramref name="seen"/> from
    /// <see cref="Answers"/> (the scheduler looks again): at once when that happened before this call, since a vCPU the
    /// notification woke may already run.
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
            bool busy = Volatile.Read(ref _busy) > 0 || now - Volatile.Read(ref _lastActivity) < (long)quiet.TotalMilliseconds;
            if (!busy || now >= end)
                return false;
            _answered.Wait(TimeSpan.FromMilliseconds(Math.Min(quiet.TotalMilliseconds, end - now)));
        }
    }
}
