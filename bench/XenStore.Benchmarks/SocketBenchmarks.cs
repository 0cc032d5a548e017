using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Engines;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using VmmKit.XenStore.Client;
using VmmKit.XenStore.Daemon;

namespace VmmKit.XenStore.Benchmarks;

/// <summary>
/// Operations per second over the Unix socket with 1 and 16 concurrent clients, for our daemon and for
/// <see cref="NullServer"/> (the same client and socket, no store): the daemon's overhead over the transport.
/// Each invocation runs <see cref="TotalOps"/> operations split evenly over the clients, all at once, so the
/// reported time is per operation: 1 s divided by it is the throughput, and multiplied by Clients it is the
/// mean latency one client sees.
/// </summary>
[Config(typeof(ShortInProcessConfig))]
public class SocketBenchmarks
{
    private const int TotalOps = 1600;

    private XenStoreDaemon? _daemon;
    private NullServer? _null;
    private CancellationTokenSource? _cts;
    private Task? _run;
    private XenStoreClient[] _clients = [];
    private string _dir = "";

    /// <summary>"daemon" or "null".</summary>
    [Params("daemon", "null")]
    public string Server { get; set; } = "daemon";

    /// <summary>Concurrent clients.</summary>
    [Params(1, 16)]
    public int Clients { get; set; }

    [GlobalSetup]
    public async Task Setup()
    {
        _dir = Path.Combine(Path.GetTempPath(), "vmmkit-xs-bench-" + Guid.NewGuid().ToString("N")[..8]);
        System.IO.Directory.CreateDirectory(_dir);
        string socket = Path.Combine(_dir, "socket");
        if (Server == "daemon")
        {
            _daemon = new XenStoreDaemon();
            _cts = new CancellationTokenSource();
            _run = _daemon.RunAsync(socket, _cts.Token);
        }
        else
        {
            _null = new NullServer(socket);
        }
        for (int i = 0; i < 200 && !File.Exists(socket); i++)
            await Task.Delay(10);
        _clients = new XenStoreClient[Clients];
        for (int i = 0; i < Clients; i++)
            _clients[i] = await XenStoreClient.ConnectAsync(socket);
        for (int i = 0; i < Clients; i++)
            await _clients[0].WriteAsync($"/bench/c{i}/value", "0123456789");
        for (int i = 0; i < 16; i++)
            await _clients[0].WriteAsync($"/bench/dir/child{i}", "x");
    }

    [GlobalCleanup]
    public async Task Cleanup()
    {
        foreach (var c in _clients)
            await c.DisposeAsync();
        if (_daemon is not null)
        {
            _cts!.Cancel();
            await _run!;
            await _daemon.DisposeAsync();
        }
        if (_null is not null)
            await _null.DisposeAsync();
        System.IO.Directory.Delete(_dir, true);
    }

    private Task RunAll(Func<XenStoreClient, int, Task> op) =>
        Task.WhenAll(_clients.Select((c, i) => Task.Run(async () =>
        {
            for (int n = 0; n < TotalOps / _clients.Length; n++)
                await op(c, i);
        })));

    [Benchmark(OperationsPerInvoke = TotalOps)]
    public Task Read() => RunAll((c, i) => c.ReadAsync(Paths[i]));

    [Benchmark(OperationsPerInvoke = TotalOps)]
    public Task Write() => RunAll((c, i) => c.WriteAsync(Paths[i], "0123456789"));

    [Benchmark(OperationsPerInvoke = TotalOps)]
    public Task Directory() => RunAll((c, _) => c.DirectoryAsync("/bench/dir"));

    /// <summary>One transaction = start, read, write, commit (four round trips).</summary>
    [Benchmark(OperationsPerInvoke = TotalOps)]
    public Task Transaction() => RunAll(async (c, i) =>
    {
        var tx = await c.StartTransactionAsync();
        await c.ReadAsync(Paths[i], tx);
        await c.WriteAsync(Paths[i], "x", tx);
        await c.EndTransactionAsync(tx, true);
    });

    private static readonly string[] Paths = Enumerable.Range(0, 64).Select(i => $"/bench/c{i}/value").ToArray();
}

/// <summary>A short in-process job: no per-benchmark project build (slow on a loaded 2-core CI box).</summary>
public sealed class ShortInProcessConfig : ManualConfig
{
    public ShortInProcessConfig()
    {
        AddJob(Job.Default.WithToolchain(InProcessEmitToolchain.Instance).WithStrategy(RunStrategy.Throughput)
            .WithLaunchCount(1).WithWarmupCount(3).WithIterationCount(8));
        AddDiagnoser(MemoryDiagnoser.Default);
    }
}
