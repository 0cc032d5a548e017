using VmmKit.TestSupport;
using VmmKit.Dom0.Daemon;

namespace VmmKit.Dom0.Tests;

/// <summary>
/// Dom0 keeps xenstored's state on disk for a Dom0 started after it dies. A guest that writes its own nodes without
/// pause must not keep a Dom0 thread saving the whole store without pause: after a save that took d, the next one a
/// change asks for waits until max(<see cref="StateSaver.MinimumInterval"/>, 4 d) after it, then saves everything
/// changed meanwhile at once. The toolstack's own saves are not delayed.
/// </summary>
public sealed class StateSaverTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmmkit-state-").FullName;
    private readonly ManualTime _time = new();
    private TimeSpan _saveTakes = TimeSpan.Zero;
    private int _snapshots;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Path => System.IO.Path.Combine(_dir, "xenstored.state");

    private StateSaver NewSaver() => new(() =>
    {
        int n = Interlocked.Increment(ref _snapshots);
        _time.Advance(_saveTakes);   // the snapshot's cost, on the test's clock
        return BitConverter.GetBytes(n);
    }, Path, _time);

    // The snapshot saved last (0 before the first): the saver counts a snapshot before it writes the file and renames
    // it into place, so a test waits for the file rather than reading it as soon as the count moves.
    private int OnDisk => File.Exists(Path) ? BitConverter.ToInt32(File.ReadAllBytes(Path)) : 0;

    private static async Task WaitUntil(Func<bool> condition)
    {
        for (int i = 0; i < 2000 && !condition(); i++)
            await Task.Delay(5);
        Assert.True(condition(), "timed out");
    }

    [Fact]
    public async Task A_guest_writing_without_pause_gets_one_save_per_interval_with_its_last_change()
    {
        var saver = NewSaver();
        var changed = new SemaphoreSlim(0);
        using var stop = new CancellationTokenSource();
        Task run = saver.RunAsync(changed, stop.Token);

        changed.Release();
        await WaitUntil(() => _snapshots == 1);   // the first change after a quiet period is saved at once
        await WaitUntil(() => OnDisk == 1);

        changed.Release(5000);                     // a burst, then more while the saver waits
        await WaitUntil(() => _time.Waiting == 1);
        changed.Release(5000);
        _time.Advance(StateSaver.MinimumInterval - TimeSpan.FromTicks(1));
        await Task.Delay(50);
        Assert.Equal(1, _snapshots);               // not before the interval

        _time.Advance(TimeSpan.FromTicks(1));
        await WaitUntil(() => _snapshots == 2);    // one save for the 10,000 changes
        await Task.Delay(50);
        Assert.Equal(2, _snapshots);
        await WaitUntil(() => OnDisk == 2);

        await stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run);
    }

    [Fact]
    public async Task A_slow_save_leaves_four_times_its_length_before_the_next()
    {
        _saveTakes = TimeSpan.FromMilliseconds(200);
        var saver = NewSaver();
        var changed = new SemaphoreSlim(0);
        using var stop = new CancellationTokenSource();
        Task run = saver.RunAsync(changed, stop.Token);

        changed.Release();
        await WaitUntil(() => _snapshots == 1);
        changed.Release();
        await WaitUntil(() => _time.Waiting == 1);
        _time.Advance(TimeSpan.FromMilliseconds(799));
        await Task.Delay(50);
        Assert.Equal(1, _snapshots);               // a save of 200 ms: at most a fifth of a thread
        _time.Advance(TimeSpan.FromMilliseconds(1));
        await WaitUntil(() => _snapshots == 2);

        await stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run);
    }

    [Fact]
    public void The_toolstack_s_saves_are_never_delayed()
    {
        var saver = NewSaver();
        saver.Save();
        saver.Save();
        Assert.Equal(2, _snapshots);
        Assert.Equal(2, OnDisk);                   // Save writes before it returns
        Assert.False(File.Exists(Path + ".new"));
    }
}
