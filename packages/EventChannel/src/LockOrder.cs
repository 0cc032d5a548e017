namespace VmmKit.EventChannel;

/// <summary>
/// Takes two locks in one global order, the lower ordinal first (Xen's double_evtchn_lock and event_fifo.c's queue
/// pair locking), so two paths that lock the same pair can never deadlock. The same lock twice is taken once.
/// </summary>
internal static class LockOrder
{
    /// <summary>Enters <paramref name="a"/> and <paramref name="b"/>, lower ordinal first.</summary>
    public static void Enter(Lock a, long orderA, Lock b, long orderB)
    {
        if (a == b)
        {
            a.Enter();
            return;
        }

        (Lock first, Lock second) = orderA < orderB ? (a, b) : (b, a);
        first.Enter();
        second.Enter();
    }

    /// <summary>Exits what <see cref="Enter"/> took.</summary>
    public static void Exit(Lock a, Lock b)
    {
        if (a != b)
            b.Exit();
        a.Exit();
    }
}
