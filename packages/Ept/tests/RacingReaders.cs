namespace VmmKit.Ept.Tests;

/// <summary>
/// Threads that repeat one step (a walk, as a guest's vCPU makes them) until disposed, while the test edits the EPT
/// on its own thread. A step returns a failure message or null; the last failure is kept.
/// </summary>
internal sealed class RacingReaders : IDisposable
{
    private readonly Thread[] _threads;
    private bool _stop;
    private long _steps;
    private string? _failure;

    /// <summary>Starts <paramref name="count"/> threads, thread i with <c>new Random(i)</c>.</summary>
    public RacingReaders(int count, Func<Random, string?> step)
    {
        _threads = [.. Enumerable.Range(0, count).Select(seed => new Thread(() =>
        {
            var random = new Random(seed);
            while (!Volatile.Read(ref _stop))
            {
                if (step(random) is { } failure)
                {
                    Volatile.Write(ref _failure, failure);
                }

                Interlocked.Increment(ref _steps);
            }
        }))];
        foreach (Thread thread in _threads)
        {
            thread.Start();
        }
    }

    /// <summary>The last failure a step reported, or null.</summary>
    public string? Failure => Volatile.Read(ref _failure);

    /// <summary>Steps made so far.</summary>
    public long Steps => Interlocked.Read(ref _steps);

    /// <summary>Stops the threads and waits for them.</summary>
    public void Dispose()
    {
        Volatile.Write(ref _stop, true);
        foreach (Thread thread in _threads)
        {
            thread.Join();
        }
    }
}
