using System.Runtime.CompilerServices;
using VmmKit.ReferenceHypervisor.Cli;
using VmmKit.TestSupport;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// Event channels, grant tables, timers and the console ring as a PV guest uses them (samples/guests/pvio): the
/// packages VmmKit.EventChannel and VmmKit.GrantTable wired into the hypercall table, the vector upcall, VIRQ_TIMER
/// with the idle time skip, SCHEDOP_poll, and the in-process console backend.
/// </summary>
public class PvioGuestTests
{
    private const ulong GuestMemory = 16 << 20;

    [Fact]
    public void Event_channels_timers_grants_and_the_console_ring_work_as_a_pv_guest_uses_them()
    {
        var log = new List<string>();
        using var machine = new Machine(64 << 20, ProcessorProviders.CreateDefault()) { Logger = log.Add, MaxInstructionsPerVcpu = 200_000_000 };
        byte[] kernel = File.ReadAllBytes(GuestBuild.Path("pvio.elf"));
        Assert.True(machine.TryCreateDomain(new DomainConfig("pvio", kernel, GuestMemory, ""), out var d, out string error), error);
        HostileGuestTests.RunBounded(machine, TimeSpan.FromSeconds(120), "pvio");
        string t = d!.Console.Transcript;
        Assert.True(d.State == DomainState.Shutdown, d.CrashReport + "\n" + t);
        foreach (string line in new[]
        {
            "map shared_info: 0", "set CALLBACK_IRQ vector: 0", "alloc_unbound: 0", "bind_interdomain: 0", "ports differ: 1",
            "send: 0", "upcall received on the bound port: 1", "upcalls positive: 1",
            "send with IF=0: 0", "not delivered while IF=0: 1", "delivered after sti: 1",
            "status: 0", "status interdomain: 1",
            "bind_virq timer: 0", "set_singleshot_timer: 0", "timer fired: 1", "woke after deadline: 1", "woke within 1 ms of deadline: 1",
            "singleshot in the past: 0", "past singleshot fired: 1", "singleshot other vcpu: -2", "stop_singleshot_timer: 0", "stop_periodic_timer: 0",
            "set_timer_op: 0", "set_timer_op fired: 1",
            "poll: 0", "poll timed out: 1", "poll pending: 0", "poll bad port: -22",
            "map grant table: 0", "map status frame under v1: -22",
            "map_grant_ref: 0", "map status: 0", "mapped page reads the grant: 1", "write through the mapping lands in the page: 1",
            "entry marked in use: 1", "unmap_grant_ref: 0", "unmap status: 0", "entry released: 1",
            "grant copy: 0", "copy status: 0", "copied bytes match: 1", "map revoked grant status: -1",
            "console and store pages reserved: 1", "console evtchn set: 1", "store evtchn set: 1", "console port bound to dom0: 1",
            "console send: 0", "hello from the console ring", "pvio done",
        })
            Assert.Contains(line + "\n", t);
        Assert.Equal(ExitCodes.Poweroff, ExitCodes.For(d));
        // Guest time skipped ahead while the vCPU was blocked: the guest waited ~3.5 ms of guest time in all.
        Assert.True(GuestTime.SystemTime(d.Vcpus[0]) > 3_500_000, $"guest time {GuestTime.SystemTime(d.Vcpus[0])} ns");
    }

    [Fact]
    public void A_blocked_domain_s_timer_fires_while_another_domain_keeps_the_machine_busy()
    {
        using var machine = new Machine(64 << 20, ProcessorProviders.CreateDefault()) { MaxInstructionsPerVcpu = 400_000_000 };
        Assert.True(machine.TryCreateDomain(new DomainConfig("pvio", File.ReadAllBytes(GuestBuild.Path("pvio.elf")), GuestMemory, ""),
            out var pvio, out string error), error);
        Assert.True(machine.TryCreateDomain(new DomainConfig("workload", File.ReadAllBytes(GuestBuild.Path("workload.elf")), GuestMemory,
            "iterations=1"), out var busy, out error), error);
        HostileGuestTests.RunBounded(machine, TimeSpan.FromSeconds(120), "pvio beside a workload");
        // The blocked vCPU's clock follows the instructions the other domain ran: its timers fire, the run ends normally.
        Assert.True(pvio!.State == DomainState.Shutdown, pvio.CrashReport);
        Assert.True(busy!.State == DomainState.Shutdown, busy.CrashReport);
        foreach (string line in new[] { "timer fired: 1", "woke after deadline: 1", "set_timer_op fired: 1", "poll timed out: 1", "pvio done" })
            Assert.Contains(line + "\n", pvio.Console.Transcript);
    }

    [Fact]
    public void The_cli_prints_the_console_ring_to_stdout()
    {
        var (code, stdout, stderr) = GuestBootTests.RunCli("boot", GuestBuild.Path("pvio.elf"), "--memory", "16");
        Assert.True(code == ExitCodes.Poweroff, $"status {code}\n{stdout}\n{stderr}");
        Assert.Contains("hello from the console ring", stdout);
    }

    [Fact]
    public void Xencons_interface_matches_xen_io_console_h()
    {
        var r = default(VmmKit.Backends.Console.XenconsInterface);
        var v = XenAbiLayout.Evaluate(["xen/io/console.h"],
        [
            "sizeof(struct xencons_interface)", "offsetof(struct xencons_interface, in)", "offsetof(struct xencons_interface, out)",
            "offsetof(struct xencons_interface, in_cons)", "offsetof(struct xencons_interface, in_prod)",
            "offsetof(struct xencons_interface, out_cons)", "offsetof(struct xencons_interface, out_prod)",
            "sizeof(((struct xencons_interface *)0)->in)", "sizeof(((struct xencons_interface *)0)->out)",
        ]);
        Assert.Equal(
            new long[] { Unsafe.SizeOf<VmmKit.Backends.Console.XenconsInterface>(), Off(ref r, ref r.In[0]), Off(ref r, ref r.Out[0]), Off(ref r, ref r.InCons),
                Off(ref r, ref r.InProd), Off(ref r, ref r.OutCons), Off(ref r, ref r.OutProd), VmmKit.Backends.Console.XenconsInterface.InSize, VmmKit.Backends.Console.XenconsInterface.OutSize },
            v);
    }

    [Fact]
    public void Vcpu_set_singleshot_timer_matches_xen_vcpu_h()
    {
        var s = default(Hypercalls.VcpuSetSingleshotTimer);
        // The struct is read with its 12 meaningful bytes (i386 packs it to 12; x86-64 pads it to 16).
        var v = XenAbiLayout.Evaluate(["xen/xen.h", "xen/vcpu.h"],
        [
            "sizeof(struct vcpu_set_singleshot_timer) - 4", "offsetof(struct vcpu_set_singleshot_timer, timeout_abs_ns)",
            "offsetof(struct vcpu_set_singleshot_timer, flags)", "VCPU_SSHOTTMR_future",
        ]);
        Assert.Equal(new long[] { Unsafe.SizeOf<Hypercalls.VcpuSetSingleshotTimer>(), Off(ref s, ref s.TimeoutAbsNs), Off(ref s, ref s.Flags),
            Hypercalls.VcpuSetSingleshotTimer.FlagFuture }, v);
    }

    private static long Off<TS, TF>(ref TS s, ref TF f) => Unsafe.ByteOffset(ref Unsafe.As<TS, byte>(ref s), ref Unsafe.As<TF, byte>(ref f)).ToInt64();
}
