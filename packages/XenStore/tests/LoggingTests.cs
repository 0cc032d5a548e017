using Microsoft.Extensions.Logging;
using VmmKit.XenStore.Daemon;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Tests;

/// <summary>The daemon logs through the <see cref="ILogger"/> it is given, and its process entry point writes only to the writers its host passes.</summary>
public sealed class LoggingTests
{
    [Fact]
    public async Task Control_print_reaches_the_logger_with_its_event_id()
    {
        var log = new ListLogger();
        await using var d = new TestDaemon(new XenStoreDaemonOptions { Logger = log });
        await using var c = await d.ConnectAsync();
        Assert.Equal("OK", await c.ControlAsync("print", "hello from a test"));
        var entry = Assert.Single(log.Entries);
        Assert.Equal((LogLevel.Information, 1, "ControlPrint", "hello from a test"), (entry.Level, entry.Id.Id, entry.Id.Name, entry.Text));
    }

    [Fact]
    public async Task An_oversized_payload_is_logged_as_a_warning()
    {
        var log = new ListLogger();
        await using var d = new TestDaemon(new XenStoreDaemonOptions { Logger = log });
        using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        await socket.ConnectAsync(new System.Net.Sockets.UnixDomainSocketEndPoint(d.SocketPath));
        var header = new byte[XsConstants.HeaderSize];
        new XsHeader(XsMessageType.Read, 1, 0, (uint)XsConstants.PayloadMax + 1).Write(header);
        await socket.SendAsync(header);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (log.Entries.Count == 0 && DateTime.UtcNow < deadline)
            await Task.Delay(10);
        var entry = Assert.Single(log.Entries);
        Assert.Equal((LogLevel.Warning, 3), (entry.Level, entry.Id.Id));
        Assert.Contains("XENSTORE_PAYLOAD_MAX", entry.Text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task RunMainAsync_writes_usage_and_errors_to_the_given_writers()
    {
        var output = new StringWriter();
        var error = new StringWriter();
        Assert.Equal(0, await XenStoreDaemon.RunMainAsync(["--help"], output, error, null, CancellationToken.None));
        Assert.Contains("live-update", output.ToString(), StringComparison.Ordinal);
        Assert.Equal("", error.ToString());

        output = new StringWriter();
        Assert.Equal(2, await XenStoreDaemon.RunMainAsync(["--no-such-option"], output, error, null, CancellationToken.None));
        Assert.Equal("", output.ToString());
        Assert.Contains("--no-such-option", error.ToString(), StringComparison.Ordinal);

        error = new StringWriter();
        string missing = Path.Combine(Path.GetTempPath(), "vmmkit-xs-" + Guid.NewGuid().ToString("N")[..12]);
        Assert.Equal(1, await XenStoreDaemon.RunMainAsync(["-U", "--rundir", missing, Path.Combine(missing, "socket")], output, error, null, CancellationToken.None));
        Assert.Contains("no state found after live-update", error.ToString(), StringComparison.Ordinal);
    }
}
