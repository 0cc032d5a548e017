using System.Diagnostics;
using System.Text;
using VmmKit.XenStore.Client;
using VmmKit.XenStore.Daemon;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Tests;

/// <summary>A daemon listening on a private socket for one test.</summary>
internal sealed class TestDaemon : IAsyncDisposable
{
    private readonly CancellationTokenSource _cts = new();
    private readonly Task _run;

    public TestDaemon(XenStoreDaemonOptions? options = null)
    {
        Daemon = new XenStoreDaemon(options);
        Directory = Path.Combine(Path.GetTempPath(), "vmmkit-xs-" + Guid.NewGuid().ToString("N")[..12]);
        SocketPath = Path.Combine(Directory, "socket");
        _run = Daemon.RunAsync(SocketPath, _cts.Token);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!File.Exists(SocketPath) && DateTime.UtcNow < deadline)
            Thread.Sleep(10);
    }

    public XenStoreDaemon Daemon { get; }

    public string Directory { get; }

    public string SocketPath { get; }

    public Task<XenStoreClient> ConnectAsync() => XenStoreClient.ConnectAsync(SocketPath);

    public XenStoreClient ConnectAsDomain(uint domid) => new(Daemon.Connect(domid));

    /// <summary>Runs a xenstore-* tool against this daemon only (XENSTORED_PATH), returning exit code and output.</summary>
    public (int ExitCode, string Stdout, string Stderr) Tool(string tool, params string[] args)
    {
        string path = VmmKit.TestSupport.RequiredTool.Require(tool, "xenstore-utils");
        var psi = new ProcessStartInfo(path) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        psi.Environment["XENSTORED_PATH"] = SocketPath;
        psi.Environment.Remove("XENSTORE_DOMAIN_INTERFACE");
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(30_000))
        {
            p.Kill();
            throw new TimeoutException($"{tool} did not finish");
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    public async ValueTask DisposeAsync()
    {
        _cts.Cancel();
        try
        {
            await _run;
        }
        catch (OperationCanceledException)
        {
        }
        await Daemon.DisposeAsync();
        try
        {
            System.IO.Directory.Delete(Directory, true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>Raw frames over a stream, for malformed-input tests.</summary>
internal sealed class RawConnection(Stream stream) : IDisposable
{
    public Stream Stream { get; } = stream;

    public static byte[] Frame(XsMessageType type, uint reqId, uint txId, ReadOnlySpan<byte> payload)
    {
        var f = new byte[16 + payload.Length];
        new XsHeader(type, reqId, txId, (uint)payload.Length).Write(f);
        payload.CopyTo(f.AsSpan(16));
        return f;
    }

    public static byte[] Strings(params string[] parts) => Encoding.ASCII.GetBytes(string.Concat(parts.Select(p => p + "\0")));

    public async Task SendAsync(byte[] bytes)
    {
        await Stream.WriteAsync(bytes);
        await Stream.FlushAsync();
    }

    public async Task<(XsHeader Header, byte[] Payload)> ReceiveAsync(int timeoutMs = 10_000)
    {
        using var cts = new CancellationTokenSource(timeoutMs);
        var h = new byte[16];
        await Stream.ReadExactlyAsync(h, cts.Token);
        var header = XsHeader.Read(h);
        var payload = new byte[header.Length];
        await Stream.ReadExactlyAsync(payload, cts.Token);
        return (header, payload);
    }

    /// <summary>Receives until a reply (not a watch event) arrives.</summary>
    public async Task<(XsHeader Header, byte[] Payload)> ReplyAsync()
    {
        while (true)
        {
            var r = await ReceiveAsync();
            if (r.Header.Type != XsMessageType.WatchEvent)
                return r;
        }
    }

    public async Task<(XsHeader Header, byte[] Payload)> RoundTripAsync(XsMessageType type, uint reqId, uint txId, byte[] payload)
    {
        await SendAsync(Frame(type, reqId, txId, payload));
        return await ReplyAsync();
    }

    public async Task<bool> IsClosedAsync()
    {
        try
        {
            using var cts = new CancellationTokenSource(10_000);
            var b = new byte[64];
            while (true)
            {
                int n = await Stream.ReadAsync(b, cts.Token);
                if (n == 0)
                    return true;
            }
        }
        catch (IOException)
        {
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    public void Dispose() => Stream.Dispose();
}

/// <summary>
/// A guest's end of a XenStore ring page that outlives daemons: <see cref="Attach"/> hands the page to a
/// (new) daemon and points both kicks at the right ends, as a host does after a restart.
/// </summary>
internal sealed class GuestRing
{
    private readonly VmmKit.XenStore.Transports.XenStoreMemoryRingPage _page = new();
    private readonly Kick _toGuest = new();
    private readonly Kick _toDaemon = new();

    public GuestRing()
    {
        Stream = new VmmKit.XenStore.Transports.XenStoreRingStream(_page, _toDaemon, VmmKit.XenStore.Transports.XenStoreRingRole.Client);
        _toGuest.Target = Stream;
    }

    /// <summary>The guest's end, for a client.</summary>
    public VmmKit.XenStore.Transports.XenStoreRingStream Stream { get; }

    /// <summary>Serves the ring from <paramref name="daemon"/> as domain <paramref name="domid"/>.</summary>
    public void Attach(VmmKit.XenStore.Daemon.XenStoreDaemon daemon, uint domid)
    {
        var binding = new VmmKit.XenStore.Transports.XenStoreRingBinding(_page, _toGuest);
        _toDaemon.Target = binding.Stream;
        daemon.AttachDomain(domid, binding);
    }

    private sealed class Kick : VmmKit.XenStore.Transports.IXenStoreEventNotifier
    {
        public VmmKit.XenStore.Transports.XenStoreRingStream? Target;

        public void Notify() => Target?.Signal();
    }
}
