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

    /// <summary>A service notified a guest.</summary>
    public void Answered()
    {
        Touch();
        if (_answered.CurrentCount < 1024)
            _answered.Release();
    }

    /// <summary>The XenStore daemon or a backend did something that may still produce output (e.g. a reply being written).</summary>
    public void Touch() => Volatile.Write(ref _lastActivity, Environment.TickCount64);

    /// <summary>
    /// Every vCPU is blocked: waits while a service is busy or was active in the last <paramref name="quiet"/>, at most
    /// <paramref name="limit"/>. True when a guest was notified meanwhile (the scheduler looks again).
    /// </summary>
    public bool WaitForServices(TimeSpan quiet, TimeSpan limit)
    {
        while (_answered.CurrentCount > 0)
            _answered.Wait(0);
        long end = Environment.TickCount64 + (long)limit.TotalMilliseconds;
        while (true)
        {
            long now = Environment.TickCount64;
            bool busy = Volatile.Read(ref _busy) > 0 || now - Volatile.Read(ref _lastActivity) < (long)quiet.TotalMilliseconds;
            if (!busy || now >= end)
                return false;
            if (_answered.Wait(TimeSpan.FromMilliseconds(Math.Min(quiet.TotalMilliseconds, end - now))))
                return true;
        }
    }
}
