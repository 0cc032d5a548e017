using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using BenchmarkDotNet.Attributes;
using VmmKit.XenStore.Client;
using VmmKit.XenStore.Daemon;
using VmmKit.XenStore.Store;
using VmmKit.XenStore.Transports;

namespace VmmKit.XenStore.Benchmarks;

/// <summary>
/// One slow client must not slow the others (issue 10 item 6). A domU on a ring has 128 watches on <c>/w</c>,
/// so every dom0 write there fires 128 events to it; with <see cref="GuestStopped"/> the guest stopped reading
/// and its queue is full (its memory quota's worth of events). Measured over the Unix socket: dom0's writes to
/// <c>/w</c>, and another dom0 client's reads while a third writes to <c>/w</c> all the time (the read
/// latency percentiles are appended to <c>BenchmarkDotNet.Artifacts/stuck-reader-latency.txt</c>).
/// </summary>
[Config(typeof(ShortInProcessConfig))]
public class StuckReaderBenchmarks
{
    private const int Ops = 1600;
    private const int Watches = 128;

    private readonly List<double> _readLatencies = [];
    private XenStoreDaemon? _daemon;
    private CancellationTokenSource? _cts;
    private Task? _run;
    private XenStoreClient? _writer, _background, _reader;
    private XenStoreRingStream? _guest;
    private Task _guestReading = Task.CompletedTask;
    private string _dir = "";
    private int _next;

    /// <summary>false: the guest reads its events; true: it stopped reading and its queue is full.</summary>
    [Params(false, true)]
    public bool GuestStopped { get; set; }

    [GlobalSetup]
    public async Task Setup()
    {
        _dir = Path.Combine(Path.GetTempPath(), "vmmkit-xs-bench-" + Guid.NewGuid().ToString("N")[..8]);
        System.IO.Directory.CreateDirectory(_dir);
        string socket = Path.Combine(_dir, "socket");
        _daemon = new XenStoreDaemon();
        _cts = new CancellationTokenSource();
        _run = _daemon.RunAsync(socket, _cts.Token);
        for (int i = 0; i < 200 && !File.Exists(socket); i++)
            await Task.Delay(10);
        _writer = await XenStoreClient.ConnectAsync(socket);
        _background = await XenStoreClient.ConnectAsync(socket);
        _reader = await XenStoreClient.ConnectAsync(socket);
        await _writer.WriteAsync("/r/value", "0123456789");
        await _writer.MkdirAsync("/w");
        await _writer.SetPermissionsAsync("/w", [new XsPermission(0, XsAccess.Read)]);

        var page = new XenStoreMemoryRingPage();
        var toGuest = new Kick();
        var toDaemon = new Kick();
        _guest = new XenStoreRingStream(page, toDaemon, XenStoreRingRole.Client);
        toGuest.Target = _guest;
        var binding = new XenStoreRingBinding(page, toGuest);
        toDaemon.Target = binding.Stream;
        _daemon.AttachDomain(5, binding);
        for (int i = 0; i < Watches; i++)
        {
            await SendAsync(_guest, 4 /* XS_WATCH */, (uint)i + 1, $"/w\0t{i}\0");
            // The acknowledgement and the watch's first event.
            await ReceiveAsync(_guest);
            await ReceiveAsync(_guest);
        }
        if (!GuestStopped)
            _guestReading = Task.Run(async () =>
            {
                var buffer = new byte[4096];
                while (await _guest.ReadAsync(buffer) > 0)
                {
                }
            });
        // Fill the stuck guest's queue up to its memory quota.
        for (int i = 0; i < 2000; i++)
            await _writer.WriteAsync($"/w/fill{i}", "v");
    }

    [GlobalCleanup]
    public async Task Cleanup()
    {
        if (_readLatencies.Count > 0)
        {
            _readLatencies.Sort();
            double P(double p) => _readLatencies[Math.Min(_readLatencies.Count - 1, (int)(_readLatencies.Count * p))];
            // BenchmarkDotNet keeps an in-process benchmark's console to itself: the percentiles go to a file.
            string line = $"GuestStopped={GuestStopped}: dom0 read latency over {_readLatencies.Count} reads with writes to /w going on: p50 {P(0.5):F3} ms, p99 {P(0.99):F3} ms, max {_readLatencies[^1]:F3} ms";
            System.IO.Directory.CreateDirectory("BenchmarkDotNet.Artifacts");
            File.AppendAllText(Path.Combine("BenchmarkDotNet.Artifacts", "stuck-reader-latency.txt"), line + Environment.NewLine);
        }
        _guest!.Dispose();
        await _guestReading;
        await _writer!.DisposeAsync();
        await _background!.DisposeAsync();
        await _reader!.DisposeAsync();
        _cts!.Cancel();
        await _run!;
        await _daemon!.DisposeAsync();
        System.IO.Directory.Delete(_dir, true);
    }

    /// <summary>A dom0 write that fires 128 events to the guest.</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public async Task WriteFiringEvents()
    {
        for (int i = 0; i < Ops; i++)
            await _writer!.WriteAsync($"/w/n{_next++ & 4095}", "v");
    }

    /// <summary>A dom0 read by another client while writes to /w keep firing events.</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    public async Task ReadWhileWritesFire()
    {
        using var stop = new CancellationTokenSource();
        var writing = Task.Run(async () =>
        {
            int n = 0;
            while (!stop.IsCancellationRequested)
                await _background!.WriteAsync($"/w/b{n++ & 4095}", "v");
        });
        for (int i = 0; i < Ops; i++)
        {
            long t = Stopwatch.GetTimestamp();
            await _reader!.ReadAsync("/r/value");
            _readLatencies.Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
        }
        stop.Cancel();
        await writing;
    }

    private static async Task SendAsync(Stream s, uint type, uint reqId, string payload)
    {
        var frame = new byte[16 + payload.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(frame, type);
        BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(4), reqId);
        BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(12), (uint)payload.Length);
        Encoding.ASCII.GetBytes(payload, frame.AsSpan(16));
        await s.WriteAsync(frame);
    }

    private static async Task ReceiveAsync(Stream s)
    {
        var header = new byte[16];
        await s.ReadExactlyAsync(header);
        await s.ReadExactlyAsync(new byte[BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(12))]);
    }

    private sealed class Kick : IXenStoreEventNotifier
    {
        public XenStoreRingStream? Target;

        public void Notify() => Target?.Signal();
    }
}
