namespace VmmKit.EventChannel.Tests;

/// <summary>Dedicated threads for the concurrency tests (the thread pool may starve on a 2-core machine).</summary>
internal static class Threads
{
    public static Thread Start(Action body)
    {
        var t = new Thread(() => body()) { IsBackground = true };
        t.Start();
        return t;
    }

    public static bool JoinAll(IEnumerable<Thread> threads, TimeSpan timeout)
    {
        DateTime end = DateTime.UtcNow + timeout;
        foreach (Thread t in threads)
        {
            TimeSpan left = end - DateTime.UtcNow;
            if (left < TimeSpan.Zero || !t.Join(left))
                return false;
        }
        return true;
    }
}
