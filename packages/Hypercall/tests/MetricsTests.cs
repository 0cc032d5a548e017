using System.Diagnostics.Metrics;
using VmmKit.Hypercall;

namespace VmmKit.Hypercall.Tests;

/// <summary>The meter is process-wide: these tests run alone so that no other test's dispatcher adds measurements.</summary>
[CollectionDefinition(nameof(HypercallMeterCollection), DisableParallelization = true)]
public sealed class HypercallMeterCollection;

/// <summary>The <c>VmmKit.Hypercall</c> meter's instruments, as the package README lists them, seen by a <see cref="MeterListener"/>.</summary>
[Collection(nameof(HypercallMeterCollection))]
public sealed unsafe class MetricsTests
{
    private static long Version(ref HypercallCall<TestVcpu> call) => 0x0004_0011;

    private static long Fault(ref HypercallCall<TestVcpu> call) => XenErrno.EFAULT.Negated();

    private static MeterListener Listen(MeasurementCallback<long> callback)
    {
        var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == HypercallMetrics.MeterName)
                    l.EnableMeasurementEvents(instrument);
            },
        };
        listener.SetMeasurementEventCallback(callback);
        listener.Start();
        return listener;
    }

    private static HypercallDispatcher<TestVcpu> Dispatcher()
    {
        var d = new HypercallDispatcher<TestVcpu>();
        d.RegisterSubOp(HypercallNumber.XenVersion, 0, &Version);
        d.Register(HypercallNumber.ConsoleIo, &Fault);
        d.Register(HypercallNumber.SchedOp, (ref HypercallCall<TestVcpu> c) => c.Argument(0) > 0 ? c.CreateContinuation(HypercallNumber.SchedOp, [c.Argument(0) - 1]) : 0);
        return d;
    }

    [Fact]
    public void The_instrument_names_are_the_documented_ones()
    {
        Assert.Equal("VmmKit.Hypercall", HypercallMetrics.MeterName);
        Assert.Equal("vmmkit.hypercall.calls", HypercallMetrics.Calls);
        Assert.Equal("vmmkit.hypercall.errors", HypercallMetrics.Errors);
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Directory.Packages.props")))
            dir = dir.Parent;
        string readme = File.ReadAllText(Path.Combine(dir!.FullName, "packages/Hypercall/README.md"));
        foreach (var name in new[] { HypercallMetrics.MeterName, HypercallMetrics.Calls, HypercallMetrics.Errors })
            Assert.Contains($"`{name}`", readme, StringComparison.Ordinal);
    }

    [Fact]
    public void Op_tags_are_Xen_names()
    {
        Assert.Equal("xen_version", HypercallMetrics.OpName(17));
        Assert.Equal("memory_op", HypercallMetrics.OpName(12));
        Assert.Equal("update_va_mapping_otherdomain", HypercallMetrics.OpName(22));
        Assert.Equal("arch_5", HypercallMetrics.OpName(53));
        Assert.Equal("11", HypercallMetrics.OpName(11));
        Assert.Equal("invalid", HypercallMetrics.OpName(64));
        Assert.Equal("ENOSYS", HypercallMetrics.ErrnoName(-38));
        Assert.Equal("4", HypercallMetrics.ErrnoName(-4));
        Assert.Equal("other", HypercallMetrics.ErrnoName(-4095));
    }

    [Fact]
    public void Calls_and_errors_are_counted_by_op_and_errno()
    {
        var sums = new Dictionary<string, long>();
        using var listener = Listen((instrument, value, tags, _) =>
        {
            var key = instrument.Name;
            foreach (var tag in tags)
                key += $"|{tag.Key}={tag.Value}";
            lock (sums)
                sums[key] = sums.GetValueOrDefault(key) + value;
        });
        var d = Dispatcher();
        var vcpu = new TestVcpu(1);
        var memory = new FlatGuestMemory(0x1000, 4096);

        var regs = new HypercallRegisters { Rax = 17, Rdi = 0 };
        d.Dispatch(vcpu, ref regs, GuestX86Mode.Long64, 0, memory);
        regs = new HypercallRegisters { Rax = 17, Rbx = 0 };
        d.Dispatch(vcpu, ref regs, GuestX86Mode.Protected32, 0, memory);
        regs = new HypercallRegisters { Rax = 18 };
        d.Dispatch(vcpu, ref regs, GuestX86Mode.Long64, 0, memory);
        regs = new HypercallRegisters { Rax = 60 };
        d.Dispatch(vcpu, ref regs, GuestX86Mode.Long64, 0, memory);
        regs = new HypercallRegisters { Rax = 1UL << 40 };
        d.Dispatch(vcpu, ref regs, GuestX86Mode.Long64, 0, memory);
        regs = new HypercallRegisters { Rax = 17 };
        d.Dispatch(vcpu, ref regs, GuestX86Mode.Long64, 3, memory);
        regs = new HypercallRegisters { Rax = 29, Rdi = 3 };
        while (d.Dispatch(vcpu, ref regs, GuestX86Mode.Long64, 0, memory) == HypercallDisposition.Preempted) { }

        var expected = new Dictionary<string, long>
        {
            ["vmmkit.hypercall.calls|op=xen_version"] = 3,
            ["vmmkit.hypercall.calls|op=console_io"] = 1,
            ["vmmkit.hypercall.calls|op=60"] = 1,
            ["vmmkit.hypercall.calls|op=invalid"] = 1,
            ["vmmkit.hypercall.calls|op=sched_op"] = 4, // the call and its three continuations
            ["vmmkit.hypercall.errors|op=console_io|errno=EFAULT"] = 1,
            ["vmmkit.hypercall.errors|op=60|errno=ENOSYS"] = 1,
            ["vmmkit.hypercall.errors|op=invalid|errno=ENOSYS"] = 1,
            ["vmmkit.hypercall.errors|op=xen_version|errno=EPERM"] = 1,
        };
        lock (sums)
            Assert.Equal(expected.OrderBy(e => e.Key), sums.OrderBy(e => e.Key));
    }

    [Fact]
    public void Dispatch_does_not_allocate_while_a_listener_records()
    {
        long measurements = 0;
        using var listener = Listen((_, value, _, _) => measurements += value);
        var d = Dispatcher();
        var vcpu = new TestVcpu(1);
        var memory = new FlatGuestMemory(0x1000, 4096);

        void RunAll()
        {
            var regs = new HypercallRegisters { Rax = 17, Rdi = 0 };
            d.Dispatch(vcpu, ref regs, GuestX86Mode.Long64, 0, memory);
            regs = new HypercallRegisters { Rax = 18 };
            d.Dispatch(vcpu, ref regs, GuestX86Mode.Long64, 0, memory);
            regs = new HypercallRegisters { Rax = 60 };
            d.Dispatch(vcpu, ref regs, GuestX86Mode.Protected32, 0, memory);
            regs = new HypercallRegisters { Rax = 17 };
            d.Dispatch(vcpu, ref regs, GuestX86Mode.Long64, 3, memory);
        }

        for (int i = 0; i < 100; i++)
            RunAll(); // warm up (JIT, tiering)
        long before = GC.GetAllocatedBytesForCurrentThread();
        long countBefore = measurements;
        for (int i = 0; i < 1000; i++)
            RunAll();
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal(1000 * (4 + 3), measurements - countBefore); // four calls, three of them errors
    }
}
