namespace VmmKit.Backends.Tests;

/// <summary>
/// What the block backend's test classes share: a world of two domains, a fresh 1 MiB raw image (2048 sectors), and
/// the tasks and objects a test starts, stopped and disposed after it.
/// </summary>
public abstract class BlockImageTests(string imagePrefix) : IAsyncLifetime
{
    /// <summary>xvda's virtual-device number (Linux's major 202, minor 0).</summary>
    private protected const uint Xvda = 51712;

    private protected readonly TestWorld _w = new();
    private protected readonly string _image = Path.Combine(Path.GetTempPath(), $"vmmkit-{imagePrefix}-{Guid.NewGuid():N}.img");
    private protected readonly CancellationTokenSource _stop = new();
    private protected readonly List<Task> _running = [];
    private protected readonly List<IDisposable> _owned = [];

    /// <inheritdoc/>
    public Task InitializeAsync()
    {
        using (var f = File.Create(_image))
            f.SetLength(1 << 20); // 2048 sectors
        return Task.CompletedTask;
    }

    /// <inheritdoc/>
    public async Task DisposeAsync()
    {
        _stop.Cancel();
        foreach (var t in _running)
        {
            try
            {
                await t;
            }
            catch (OperationCanceledException)
            {
            }
        }

        foreach (var d in _owned)
            d.Dispose();
        await _w.DisposeAsync();
        File.Delete(_image);
    }
}
