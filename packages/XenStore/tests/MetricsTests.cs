using System.Diagnostics.Metrics;
using VmmKit.XenStore.Client;
using VmmKit.XenStore.Daemon;
using VmmKit.XenStore.Store;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Tests;

/// <summary>The meter is process-wide: these tests run alone so that no other test's daemon adds measurements.</summary>
[CollectionDefinition(nameof(XenStoreMeterCollection), DisableParallelization = true)]
public sealed class XenStoreMeterCollection;

/// <summary>The <c>VmmKit.XenStore</c> meter's instruments, as the package README lists them, seen by a <see cref="MeterListener"/>.</summary>
[Collection(nameof(XenStoreMeterCollection))]
public sealed class MetricsTests
{
    /// <summary>Sums every measurement per instrument name and (tag name, tag value) pair.</summary>
    private sealed class Recorder : IDisposable
    {
        private readonly MeterListener _listener = new();
        private readonly Dictionary<string, long> _sums = [];

        public Recorder()
        {
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name == XenStoreMetrics.MeterName)
                    listener.EnableMeasurementEvents(instrument);
            };
            _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
            {
                lock (_sums)
                {
                    Add(instrument.Name, value);
                    foreach (var tag in tags)
                        Add($"{instrument.Name}|{tag.Key}={tag.Value}", value);
                }
            });
            _listener.Start();
        }

        private void Add(string key, long value) => _sums[key] = _sums.GetValueOrDefault(key) + value;

        public long this[string key]
        {
            get { lock (_sums) return _sums.GetValueOrDefault(key); }
        }

        public void Dispose() => _listener.Dispose();
    }

    [Fact]
    public void The_instrument_names_are_the_documented_ones()
    {
        Assert.Equal("VmmKit.XenStore", XenStoreMetrics.MeterName);
        Assert.Equal("vmmkit.xenstore.requests", XenStoreMetrics.Requests);
        Assert.Equal("vmmkit.xenstore.errors", XenStoreMetrics.Errors);
        Assert.Equal("vmmkit.xenstore.watch_events", XenStoreMetrics.WatchEvents);
        Assert.Equal("vmmkit.xenstore.watch_events.dropped", XenStoreMetrics.DroppedEvents);
        Assert.Equal("vmmkit.xenstore.connections", XenStoreMetrics.Connections);
        Assert.Equal("vmmkit.xenstore.client.watch_backlogs.collapsed", XenStoreMetrics.CollapsedWatchBacklogs);
        string readme = File.ReadAllText(Path.Combine(RepoRoot(), "packages/XenStore/README.md"));
        foreach (var name in new[] { XenStoreMetrics.MeterName, XenStoreMetrics.Requests, XenStoreMetrics.Errors, XenStoreMetrics.WatchEvents, XenStoreMetrics.DroppedEvents, XenStoreMetrics.Connections, XenStoreMetrics.CollapsedWatchBacklogs })
            Assert.Contains($"`{name}`", readme, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Requests_errors_events_and_connections_are_counted()
    {
        using var m = new Recorder();
        await using (var d = new TestDaemon())
        {
            await using var c = await d.ConnectAsync();
            await c.WriteAsync("/m/a", "1");
            Assert.Equal("1", await c.ReadStringAsync("/m/a"));
            await Assert.ThrowsAsync<XenStoreException>(() => c.ReadAsync("/m/none"));
            await Assert.ThrowsAsync<XenStoreException>(() => c.ReadAsync("/m/none2"));
            var reply = await c.RequestAsync((XsMessageType)99, "x\0"u8.ToArray());
            Assert.Equal(XsMessageType.Error, reply.Header.Type);

            await using var events = c.WatchAsync("/m", "tok").GetAsyncEnumerator();
            Assert.True(await events.MoveNextAsync()); // the event that acknowledges the watch
            await c.WriteAsync("/m/b", "2");
            Assert.True(await events.MoveNextAsync());
        }

        Assert.Equal(1, m[$"{XenStoreMetrics.Connections}|kind=socket"]);
        Assert.True(m[$"{XenStoreMetrics.Requests}|type=XS_WRITE"] >= 2);
        Assert.Equal(3, m[$"{XenStoreMetrics.Requests}|type=XS_READ"]);
        Assert.Equal(1, m[$"{XenStoreMetrics.Requests}|type=XS_WATCH"]);
        Assert.Equal(1, m[$"{XenStoreMetrics.Requests}|type=unknown"]);
        Assert.Equal(2, m[$"{XenStoreMetrics.Errors}|errno=ENOENT"]);
        Assert.Equal(1, m[$"{XenStoreMetrics.Errors}|errno=ENOSYS"]);
        Assert.Equal(2, m[XenStoreMetrics.WatchEvents]);
        Assert.Equal(0, m[XenStoreMetrics.DroppedEvents]);
    }

    [Fact]
    public async Task A_client_watch_backlog_collapsed_is_counted_once()
    {
        using var m = new Recorder();
        await using var daemon = new XenStoreDaemon();
        await using var c = new XenStoreClient(daemon.Connect()) { MaxPendingWatchEvents = 2 };
        await using var events = c.WatchAsync("/c", "tok").GetAsyncEnumerator();
        Assert.True(await events.MoveNextAsync());
        for (int i = 0; i < 5; i++)
            await c.WriteAsync(FormattableString.Invariant($"/c/{i}"), "1");   // the third collapses the backlog

        Assert.Equal(1, m[XenStoreMetrics.CollapsedWatchBacklogs]);
        Assert.True(await events.MoveNextAsync());
        Assert.Equal("/c", events.Current.Path);
    }

    [Fact]
    public async Task Events_a_domain_quota_cannot_hold_are_counted_as_dropped()
    {
        using var m = new Recorder();
        var options = new XenStoreDaemonOptions();
        options.Quotas.Memory = 8 * 1024;
        await using var daemon = new XenStoreDaemon(options);
        await using var dom0 = new XenStoreClient(daemon.Connect());
        await dom0.MkdirAsync("/w");
        await dom0.SetPermissionsAsync("/w", [new XsPermission(0, XsAccess.Read)]);
        var ring = new GuestRing();
        ring.Attach(daemon, 5);
        using var guest = new RawConnection(ring.Stream);
        await guest.RoundTripAsync(XsMessageType.Watch, 1, 0, RawConnection.Strings("/w", "t"));
        XsConnection conn;
        lock (daemon.Gate)
            conn = daemon.Processor.Connections.Single(c => c.DomainId == 5);

        for (int i = 0; i < 1000; i++)
            await dom0.WriteAsync($"/w/n{i}", "v");

        int dropped;
        lock (daemon.Gate)
            dropped = conn.Output.DroppedEvents;
        Assert.True(dropped > 0);
        Assert.Equal(dropped, m[XenStoreMetrics.DroppedEvents]);
        Assert.Equal(1001 - dropped, m[XenStoreMetrics.WatchEvents]);
        Assert.Equal(1, m[$"{XenStoreMetrics.Connections}|kind=stream"]);
        Assert.Equal(1, m[$"{XenStoreMetrics.Connections}|kind=domain_ring"]);
    }

    private static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Directory.Packages.props")))
            dir = dir.Parent;
        return dir?.FullName ?? throw new DirectoryNotFoundException("repository root not found");
    }
}
