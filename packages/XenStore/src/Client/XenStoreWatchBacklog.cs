using System.Threading.Channels;

namespace VmmKit.XenStore.Client;

/// <summary>
/// The events of one watch that the client has received and its consumer has not taken yet, at most a limit. Past it
/// they are replaced by one event for the watched path itself, which says "look again at the whole subtree", and
/// further events are dropped until the consumer has taken that one. XSA-349: Linux's xenbus queued watch events
/// without bound, so a guest that kept changing the nodes a Dom0 backend watched exhausted Dom0's memory.
/// </summary>
internal sealed class XenStoreWatchBacklog(string watchedPath, string token, int limit)
{
    private readonly Queue<string> _paths = new();
    private readonly Lock _lock = new();
    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(
        new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true });
    private bool _collapsed;
    private bool _completed;

    /// <summary>Queues an event for <paramref name="path"/> (called by the client's reader).</summary>
    public void Post(string path)
    {
        lock (_lock)
        {
            if (_collapsed || _completed)
                return;   // the event for the watched path still waiting covers this one
            if (_paths.Count >= limit)
            {
                _paths.Clear();
                _paths.Enqueue(watchedPath);
                _collapsed = true;
                Daemon.XenStoreMetrics.WatchBacklogCollapsed();
            }
            else
            {
                _paths.Enqueue(path);
            }
        }

        _wake.Writer.TryWrite(true);
    }

    /// <summary>No more events come (the connection closed): the consumer takes what is queued, then the watch ends.</summary>
    public void Complete()
    {
        lock (_lock)
            _completed = true;
        _wake.Writer.TryWrite(true);
    }

    /// <summary>The next event, or null once the backlog is complete and empty.</summary>
    public async ValueTask<XenStoreWatchEvent?> TakeAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            lock (_lock)
            {
                if (_paths.TryDequeue(out string? path))
                {
                    if (_paths.Count == 0)
                        _collapsed = false;   // the event for the watched path is taken: events come one by one again
                    return new XenStoreWatchEvent(path, token);
                }

                if (_completed)
                    return null;
            }

            await _wake.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);   // a Post after the look above left its wake-up
        }
    }
}
