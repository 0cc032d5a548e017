using Iced.Intel;
using VmmKit.EventChannel;
using VmmKit.Hypercall;
using VmmKit.ReferenceHypervisor.Demo;
using VmmKit.ReferenceHypervisor.Host;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.ReferenceHypervisor.Tests;

/// <summary>
/// With a Dom0 process, the scheduler must not skip a blocked guest's time while Dom0 holds work for it (an event it
/// was sent and has not served): on a loaded host the Dom0 process may answer seconds later, and skipping guest time
/// meanwhile shows the guest a disk request that took minutes ("task blocked for more than 120 seconds").
/// </summary>
public class HostHeldWorkTests
{
    private const uint Load = 0x100000;

    /// <summary>A control domain's channel that holds work until it is released.</summary>
    private sealed class HoldingHost : IMachineHost
    {
        private volatile bool _holding = true;
        private int _waits;

        public int Waits => Volatile.Read(ref _waits);

        public bool HoldsWork => _holding;

        public void Release() => _holding = false;

        public bool Poll() => false;

        public bool WaitForWork()
        {
            Interlocked.Increment(ref _waits);
            Thread.Sleep(5);
            return true;
        }
    }

    [Theory]
    [InlineData("round-robin")]
    [InlineData("threaded")]
    public async Task A_blocked_guest_keeps_its_time_while_the_control_domain_holds_work(string scheduler)
    {
        // Guest: SCHEDOP_poll on no port with a timeout 1 s of guest time ahead, then CLI; HLT (power off).
        var a = new Assembler(32);
        a.mov(esp, Load + 0x4000);
        a.mov(ecx, 0x40000000);                         // hypercall page
        a.mov(eax, Load + 0x2000);
        a.xor(edx, edx);
        a.wrmsr();
        a.mov(__dword_ptr[Load + 0x3000], 0);           // sched_poll (32-bit): ports, nr_ports = 0, timeout
        a.mov(__dword_ptr[Load + 0x3004], 0);
        a.mov(__dword_ptr[Load + 0x3008], 1_000_000_000);
        a.mov(__dword_ptr[Load + 0x300C], 0);
        a.mov(ebx, 3);                                  // SCHEDOP_poll
        a.mov(ecx, Load + 0x3000);
        a.mov(eax, Load + 0x2000 + (29 * 32));
        a.call(eax);
        a.cli();
        a.hlt();
        var stream = new MemoryStream();
        a.Assemble(new StreamCodeWriter(stream), Load);
        using var machine = new Machine(32 << 20, ProcessorProviders.CreateDefault()) { Scheduling = (SchedulerMode)Array.IndexOf(Machine.SchedulerNames, scheduler) };
        Assert.True(machine.TryCreateDomain(new DomainConfig("t", Elf32ImageWriter.Write(Load, stream.ToArray(), 0x4000, Load), 8 << 20), out var d, out string e), e);
        var host = new HoldingHost();
        machine.Host = host;
        var run = Task.Run(machine.Run);
        Assert.True(SpinWait.SpinUntil(() => d!.State == DomainState.Blocked, TimeSpan.FromSeconds(30)), $"state {d!.State}");
        // While the host holds work, the guest stays blocked: its deadline is not reached by skipping guest time; the
        // scheduler waits for the host instead.
        await Task.Delay(300);
        Assert.Equal(DomainState.Blocked, d.State);
        Assert.True(host.Waits > 0);

        // Released: the skip happens, the guest wakes at its deadline and powers off.
        host.Release();
        Assert.True(SpinWait.SpinUntil(() => d.State == DomainState.Shutdown, TimeSpan.FromSeconds(30)), $"state {d.State}");
        machine.Host = null;
        await run.WaitAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public void The_control_domain_holds_an_event_from_its_delivery_until_dom0_unmasks_the_port()
    {
        using var machine = new Machine(32 << 20, ProcessorProviders.CreateDefault(), VmmKit.Ept.MachineMemoryBacking.Anonymous, inProcessBackend: false);
        var dom0 = new ControlDomain(machine, 256);
        var sent = new List<uint>();
        dom0.EventSink = port =>
        {
            sent.Add(port);
            return true;
        };
        Assert.True(machine.TryCreateDomain(new DomainConfig("g", Elf32ImageWriter.Write(Load, [0xF4], 0x4000, Load), 8 << 20), out var guest, out string e), e);
        var unbound = new EvtchnAllocUnbound { Dom = DomainId.Self, RemoteDom = guest!.Id };
        Assert.Equal(0, machine.Events.AllocUnbound(dom0.Domain.Events, ref unbound));
        var bind = new EvtchnBindInterdomain { RemoteDom = 0, RemotePort = unbound.Port };
        Assert.Equal(0, machine.Events.BindInterdomain(guest.Events, ref bind));
        sent.Clear();
        Assert.Equal(0, machine.Events.Unmask(dom0.Domain.Events, unbound.Port)); // the bind's own event, served
        Assert.False(dom0.HoldsWork);

        Assert.Equal(0, machine.Events.Send(guest.Events, bind.LocalPort));     // a guest's request
        Assert.Equal([unbound.Port], sent);
        Assert.True(dom0.HoldsWork);
        Assert.True(dom0.HoldsWork);                                             // looking does not consume it
        Assert.Equal(0, machine.Events.Unmask(dom0.Domain.Events, unbound.Port)); // Dom0 served it
        Assert.False(dom0.HoldsWork);

        Assert.Equal(0, machine.Events.Send(guest.Events, bind.LocalPort));
        Assert.True(dom0.HoldsWork);
        dom0.ForgetDelivered();                                                  // Dom0 went away
        Assert.False(dom0.HoldsWork);
    }
}
