namespace VmmKit.Dom0.Daemon;

/// <summary>
/// Keeps xenstored's state on disk, so that a Dom0 started after this one dies finds the tree, the connections and the
/// watches (<c>rundir/xenstored.state</c>, Xen's live-update format). The toolstack saves at once after each of its
/// changes (<see cref="Save"/>); changes made by others, a guest's own nodes among them, are saved by
/// <see cref="RunAsync"/>, which after a save that took d starts the next no sooner than max(<see cref="MinimumInterval"/>,
/// 4 d) after it ended and then saves every change made meanwhile at once. A guest writing without pause therefore
/// keeps at most a fifth of one Dom0 thread saving the whole store, where each of its writes could start a save; what a
/// Dom0 dying meanwhile loses is at most that interval of others' changes.
/// </summary>
/// <param name="snapshot">The daemon's state (<c>XenStoreDaemon.SaveState</c>).</param>
/// <param name="path">The file; written as <c>path.new</c>, then moved over it.</param>
/// <param name="time">The clock.</param>
internal sealed class StateSaver(Func<byte[]> snapshot, string path, TimeProvider time)
{
    /// <summary>The shortest time between the end of a save and the start of one <see cref="RunAsync"/> makes.</summary>
    public static readonly TimeSpan MinimumInterval = TimeSpan.FromMilliseconds(100);

    private const int IdleShare = 4;   // the pause after a save, in lengths of that save
    private readonly Lock _lock = new();
    private long _nextAllowed;         // timestamp before which RunAsync does not start a save

    /// <summary>Saves now (the toolstack's changes, start and exit).</summary>
    public void Save()
    {
        lock (_lock)
        {
            long start = time.GetTimestamp();
            string tmp = path + ".new";
            File.WriteAllBytes(tmp, snapshot());
            File.Move(tmp, path, overwrite: true);
            long end = time.GetTimestamp();
            long minimum = (long)(MinimumInterval.TotalSeconds * time.TimestampFrequency);
            _nextAllowed = end + Math.Max(minimum, IdleShare * (end - start));
        }
    }

    /// <summary>Saves after changes: each count of <paramref name="changed"/> is one change; runs until cancelled.</summary>
    public async Task RunAsync(SemaphoreSlim changed, CancellationToken cancellationToken)
    {
        while (true)
        {
            await changed.WaitAsync(cancellationToken).ConfigureAwait(false);
            long wait;
            lock (_lock)
                wait = _nextAllowed - time.GetTimestamp();
            if (wait > 0)
                await Task.Delay(TimeSpan.FromSeconds((double)wait / time.TimestampFrequency), time, cancellationToken).ConfigureAwait(false);
            while (changed.CurrentCount > 0)
                await changed.WaitAsync(cancellationToken).ConfigureAwait(false);   // one save for all of them
            Save();
        }
    }
}
