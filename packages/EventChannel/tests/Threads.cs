using System.Collections.Concurrent;

namespace VmmKit.EventChannel.Tests;

/// <summary>
/// Dedicated threads for the concurrency tests (the thread pool may starve on a 2-core machine);
/// an exception on a thread is recorded in <see cref="Errors"/> instead of crashing the test host.
/// </summary>
internal sealed class Threads
{
    public ConcurrentQueue<Exception> Errors { get; } = new();

    public Thread Start(Action body)
    {
        var t = new Thread(() =>
        {
            try
            {
                body();
            }
            catch (Exception e)
            {
                Errors.Enqueue(e);
            }
        }) { IsBackground = true };
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
