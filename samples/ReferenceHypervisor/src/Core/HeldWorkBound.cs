namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// How long the scheduler keeps guest time from skipping ahead while Dom0 holds work for a blocked guest (an event
/// delivered and not yet served): as long as the holding lasts, up to <see cref="Limit"/> of continuous holding, against
/// a hung service or a count that never goes back to zero. Serves the in-process services (<c>PvActivity</c>) and the
/// Dom0 process (<c>Machine.HostHoldsWork</c>) alike. Thread-safe for one observer at a time.
/// </summary>
internal sealed class HeldWorkBound
{
    /// <summary>How long held work is waited for before the scheduler lets guest time pass anyway.</summary>
    public static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    private long _since; // Environment.TickCount64 when the current holding began; 0 while nothing is held

    /// <summary>
    /// Records whether work is held at <paramref name="now"/> (a tick count) and returns the tick count until which it
    /// is waited for: the start of the continuous holding plus <see cref="Limit"/>, or 0 when nothing is held.
    /// </summary>
    public long Observe(bool held, long now)
    {
        if (!held)
        {
            Volatile.Write(ref _since, 0);
            return 0;
        }

        long since = Volatile.Read(ref _since);
        if (since == 0)
            Volatile.Write(ref _since, since = now);
        return since + (long)Limit.TotalMilliseconds;
    }
}
