using BenchmarkDotNet.Attributes;
using VmmKit.EventChannel;

namespace VmmKit.EventChannel.Benchmarks;

/// <summary>
/// Sends per second from <see cref="Threads"/> backend threads at once, each on its own
/// interdomain channel to the same guest (the receiver does not drain, so after the first send an
/// event is already pending: the steady state of a busy backend). The time per operation is the
/// wall time of all sends divided by their number: 1 s divided by it is the total sends/s.
/// </summary>
[MemoryDiagnoser]
public class SendThroughputBenchmarks
{
    private const int TotalSends = 60_000; // split evenly between the threads
    private EventChannelHypervisor _hv = null!;
    private BenchGuest[] _senders = null!;
    private BenchGuest _receiver = null!;
    private uint[] _ports = null!;
    private Thread[] _threads = null!;
    private Barrier _start = null!, _done = null!;
    private volatile bool _stop;

    [Params(1, 2, 4)]
    public int Threads { get; set; }

    [Params(EventChannelAbiKind.TwoLevel, EventChannelAbiKind.Fifo)]
    public EventChannelAbiKind Abi { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _hv = new EventChannelHypervisor();
        _receiver = new BenchGuest(_hv, 100, vcpus: 1, fifo: Abi == EventChannelAbiKind.Fifo);
        _senders = new BenchGuest[Threads];
        _ports = new uint[Threads];
        for (int t = 0; t < Threads; t++)
        {
            _senders[t] = new BenchGuest(_hv, (ushort)(1 + t), vcpus: 1, fifo: false);
            _ports[t] = BenchGuest.Connect(_hv, _senders[t], _receiver).Local;
        }
        _start = new Barrier(Threads + 1);
        _done = new Barrier(Threads + 1);
        _threads = new Thread[Threads];
        for (int t = 0; t < Threads; t++)
        {
            int index = t;
            _threads[t] = new Thread(() => Worker(index)) { IsBackground = true };
            _threads[t].Start();
        }
    }

    private void Worker(int index)
    {
        EventChannelDomain domain = _senders[index].Domain;
        uint port = _ports[index];
        while (true)
        {
            _start.SignalAndWait();
            if (_stop)
                return;
            for (int i = 0; i < TotalSends / Threads; i++)
                _hv.Send(domain, port);
            _done.SignalAndWait();
        }
    }

    [Benchmark(Description = "send (all threads together)", OperationsPerInvoke = TotalSends)]
    public void Sends()
    {
        _start.SignalAndWait();
        _done.SignalAndWait();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _stop = true;
        _start.SignalAndWait();
        foreach (Thread t in _threads)
            t.Join();
        foreach (BenchGuest g in _senders)
            g.Dispose();
        _receiver.Dispose();
    }
}
