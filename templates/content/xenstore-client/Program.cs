using VmmKit.XenStore.Client;
using VmmKit.XenStore.Daemon;

// Debian's xenstore-* tools find xenstored through XENSTORED_PATH; so does this tool. Without it, an
// in-process daemon on a private socket stands in, so the program runs anywhere.
string? socket = Environment.GetEnvironmentVariable("XENSTORED_PATH");
XenStoreDaemon? daemon = null;
using var stop = new CancellationTokenSource();
Task serving = Task.CompletedTask;
if (string.IsNullOrEmpty(socket))
{
    socket = Path.Combine(Path.GetTempPath(), $"mytool-{Environment.ProcessId}.sock");
    daemon = new XenStoreDaemon();
    serving = daemon.RunAsync(socket, stop.Token);
}

await using (var xs = await XenStoreClient.ConnectAsync(socket))
{
    await xs.WriteAsync("/tool/greeting", "hello from a VmmKit XenStore client");
    Console.WriteLine(await xs.ReadStringAsync("/tool/greeting"));

    // Watches are IAsyncEnumerable; the first event is the watch's own path.
    await foreach (var e in xs.WatchAsync("/tool"))
    {
        Console.WriteLine($"watch fired: {e.Path}");
        break;
    }
    await xs.RemoveAsync("/tool");
}

stop.Cancel();
await serving;
if (daemon is not null)
    await daemon.DisposeAsync();
