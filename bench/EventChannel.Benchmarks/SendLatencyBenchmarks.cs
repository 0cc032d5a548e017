using BenchmarkDotNet.Attributes;
using VmmKit.EventChannel;

namespace VmmKit.EventChannel.Benchmarks;

/// <summary>
/// One EVTCHNOP_send on an interdomain channel, all the way to the receiver's upcall: channel
/// lookup and lock, the 2-level bitmap/selector or FIFO word/queue/READY updates in guest memory,
/// <c>evtchn_upcall_pending</c> and the upcall callback. Between sends the receiving guest
/// consumes the event (clears what its handler would), so every send takes the full path.
/// </summary>
[MemoryDiagnoser]
public unsafe class SendLatencyBenchmarks
{
    private EventChannelHypervisor _hv = null!;
    private BenchGuest _a = null!, _b = null!;
    private uint _local, _remote;

    [Params(EventChannelAbiKind.TwoLevel, EventChannelAbiKind.Fifo)]
    public EventChannelAbiKind Abi { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _hv = new EventChannelHypervisor();
        _a = new BenchGuest(_hv, 1, vcpus: 1, fifo: false);
        _b = new BenchGuest(_hv, 2, vcpus: 1, fifo: Abi == EventChannelAbiKind.Fifo);
        (_local, _remote) = BenchGuest.Connect(_hv, _a, _b);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _a.Dispose();
        _b.Dispose();
    }

    [Benchmark(Description = "send -> pending -> upcall")]
    public long SendToUpcall()
    {
        long rc = _hv.Send(_a.Domain, _local);
        // The guest's handler: upcall_pending = 0, then consume the event.
        byte* shared = _b.SharedInfo;
        shared[0] = 0;
        if (Abi == EventChannelAbiKind.TwoLevel)
        {
            *(ulong*)(shared + 8) = 0;                       // vcpu_info[0].evtchn_pending_sel
            ((ulong*)(shared + 2048))[_remote / 64] = 0;    // evtchn_pending word
        }
        else
        {
            *_b.Ready(0) = 0;
            *_b.EventWord(_remote) = 0;                      // unlinked, not pending
        }
        return rc;
    }
}
