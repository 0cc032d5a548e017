using System.Runtime.CompilerServices;
using System.Threading.Channels;

namespace VmmKit.Dom0.Daemon;

/// <summary>
/// What one <c>xl console</c> client has not been sent yet of its domain's output: at most <c>limit</c> bytes, the
/// newest. xenconsoled keeps no more than the domain's <c>console/limit</c> of output its tty has not taken
/// (buffer_append discards the rest), so a client that stops reading cannot make a chatty guest grow Dom0's memory;
/// here the oldest output goes. The guest's side (<see cref="Post"/>) never waits for the client.
/// </summary>
internal sealed class ConsoleFollower(int limit)
{
    private readonly Queue<byte[]> _pending = new();
    private readonly Lock _lock = new();
    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(
        new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true });
    private int _pendingBytes;
    private long _droppedBytes;
    private bool _ended;

    /// <summary>Bytes posted and not read yet.</summary>
    public int PendingBytes
    {
        get
        {
            lock (_lock)
                return _pendingBytes;
        }
    }

    /// <summary>Bytes dropped because the client was more than the limit behind.</summary>
    public long DroppedBytes
    {
        get
        {
            lock (_lock)
                return _droppedBytes;
        }
    }

    /// <summary>
    /// Queues what the domain printed; an empty <paramref name="output"/> is the end (the console was disconnected).
    /// Drops the oldest bytes queued while more than the limit would be.
    /// </summary>
    public void Post(ReadOnlySpan<byte> output)
    {
        lock (_lock)
        {
            if (output.IsEmpty)
            {
                _ended = true;
            }
            else
            {
                if (output.Length > limit)
                {
                    _droppedBytes += output.Length - limit;
                    output = output[^limit..];
                }

                _pending.Enqueue(output.ToArray());
                _pendingBytes += output.Length;
                while (_pendingBytes > limit)
                {
                    byte[] oldest = _pending.Dequeue();
                    _pendingBytes -= oldest.Length;
                    _droppedBytes += oldest.Length;
                }
            }
        }

        _wake.Writer.TryWrite(true);
    }

    /// <summary>The output queued, oldest first, as it comes, until the end was posted and everything before it read.</summary>
    public async IAsyncEnumerable<byte[]> ReadAllAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        while (true)
        {
            byte[]? next;
            bool ended;
            lock (_lock)
            {
                if (_pending.TryDequeue(out next))
                    _pendingBytes -= next.Length;
                ended = _ended;
            }

            if (next is not null)
                yield return next;
            else if (ended)
                yield break;
            else
                await _wake.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);   // a Post after the look above left its wake-up
        }
    }
}
