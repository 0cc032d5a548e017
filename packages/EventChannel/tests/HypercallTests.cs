using System.Runtime.InteropServices;
using VmmKit.Hypercall;

namespace VmmKit.EventChannel.Tests;

/// <summary>EVTCHNOPs through VmmKit.Hypercall's dispatcher: registers in, struct copied from and to guest memory, -EFAULT, -ENOSYS.</summary>
public class HypercallTests
{
    private sealed record Vcpu(EventChannelDomain Domain);

    private sealed class Callers : IEventChannelCallerMap<Vcpu>
    {
        public EventChannelDomain DomainOf(Vcpu caller) => caller.Domain;
    }

    /// <summary>A guest's virtual memory: one flat page at 0x10000.</summary>
    private sealed class PageMemory : IGuestVirtualMemory
    {
        public const ulong Base = 0x10000;
        public readonly byte[] Bytes = new byte[4096];
        public bool TryRead(ulong gva, Span<byte> destination) =>
            gva >= Base && gva - Base + (ulong)destination.Length <= 4096 && Bytes.AsSpan((int)(gva - Base), destination.Length).TryCopyTo(destination);
        public bool TryWrite(ulong gva, ReadOnlySpan<byte> source) =>
            gva >= Base && gva - Base + (ulong)source.Length <= 4096 && source.TryCopyTo(Bytes.AsSpan((int)(gva - Base)));
        public T Read<T>(ulong gva) where T : unmanaged => MemoryMarshal.Read<T>(Bytes.AsSpan((int)(gva - Base)));
        public void Write<T>(ulong gva, T value) where T : unmanaged => MemoryMarshal.Write(Bytes.AsSpan((int)(gva - Base)), in value);
    }

    private static ulong Call(HypercallDispatcher<Vcpu> d, Vcpu v, PageMemory m, EventChannelOp op, ulong arg, GuestX86Mode mode = GuestX86Mode.Long64)
    {
        var regs = mode == GuestX86Mode.Long64
            ? new HypercallRegisters { Rax = (ulong)HypercallNumber.EventChannelOp, Rdi = (ulong)op, Rsi = arg }
            : new HypercallRegisters { Rax = (ulong)HypercallNumber.EventChannelOp, Rbx = (ulong)op, Rcx = arg };
        Assert.Equal(HypercallDisposition.Completed, d.Dispatch(v, ref regs, mode, cpl: 0, m));
        return regs.Rax;
    }

    [Fact]
    public void Guests_connect_and_notify_through_vmcall()
    {
        var hv = new EventChannelHypervisor();
        using var ga = new TestGuest(hv, 1, vcpus: 1);
        using var gb = new TestGuest(hv, 2, vcpus: 1);
        var dispatcher = new HypercallDispatcher<Vcpu>();
        new EventChannelHypercalls<Vcpu>(hv, new Callers()).Register(dispatcher);
        var a = new Vcpu(ga.Domain);
        var b = new Vcpu(gb.Domain);
        var ma = new PageMemory();
        var mb = new PageMemory();

        mb.Write(0x10000, new EvtchnAllocUnbound { Dom = DomainId.Self, RemoteDom = 1 });
        Assert.Equal(0UL, Call(dispatcher, b, mb, EventChannelOp.AllocUnbound, 0x10000));
        uint remote = mb.Read<EvtchnAllocUnbound>(0x10000).Port;

        // A 32-bit caller: same struct layout, arguments in EBX/ECX.
        ma.Write(0x10100, new EvtchnBindInterdomain { RemoteDom = 2, RemotePort = remote });
        Assert.Equal(0UL, Call(dispatcher, a, ma, EventChannelOp.BindInterdomain, 0x10100, GuestX86Mode.Protected32));
        uint local = ma.Read<EvtchnBindInterdomain>(0x10100).LocalPort;

        ma.Write(0x10200, new EvtchnSend { Port = local });
        Assert.Equal(0UL, Call(dispatcher, a, ma, EventChannelOp.Send, 0x10200));
        Assert.True(gb.GuestPending(remote));
        Assert.Equal(1, gb.Upcalls.Total);

        mb.Write(0x10300, new EvtchnStatus { Dom = DomainId.Self, Port = remote });
        Assert.Equal(0UL, Call(dispatcher, b, mb, EventChannelOp.Status, 0x10300));
        var st = mb.Read<EvtchnStatus>(0x10300);
        Assert.Equal(((uint)EventChannelStatusCode.Interdomain, (ushort)1, local), (st.Status, st.U.Dom, st.U.Port));

        ma.Write(0x10400, new EvtchnInitControl { ControlGfn = TestGuest.ControlGfn, Offset = 0, Vcpu = 0 });
        Assert.Equal(0UL, Call(dispatcher, a, ma, EventChannelOp.InitControl, 0x10400));
        Assert.Equal(17, ma.Read<EvtchnInitControl>(0x10400).LinkBits);
        ma.Write(0x10500, new EvtchnExpandArray { ArrayGfn = TestGuest.FirstArrayGfn });
        Assert.Equal(0UL, Call(dispatcher, a, ma, EventChannelOp.ExpandArray, 0x10500));
        ma.Write(0x10600, new EvtchnSetPriority { Port = local, Priority = 2 });
        Assert.Equal(0UL, Call(dispatcher, a, ma, EventChannelOp.SetPriority, 0x10600));

        ma.Write(0x10700, new EvtchnClose { Port = local });
        Assert.Equal(0UL, Call(dispatcher, a, ma, EventChannelOp.Close, 0x10700));
        Assert.Equal(ChannelState.Unbound, hv.GetState(gb.Domain, remote));
    }

    [Fact]
    public void Bad_pointers_unknown_commands_and_the_compat_hypercall()
    {
        var hv = new EventChannelHypervisor();
        using var g = new TestGuest(hv, 1, vcpus: 1);
        var dispatcher = new HypercallDispatcher<Vcpu>();
        new EventChannelHypercalls<Vcpu>(hv, new Callers()).Register(dispatcher);
        var v = new Vcpu(g.Domain);
        var m = new PageMemory();
        ulong efault = unchecked((ulong)XenErrno.EFAULT.Negated());
        foreach (EventChannelOp op in Enum.GetValues<EventChannelOp>())
            Assert.Equal(efault, Call(dispatcher, v, m, op, 0xdead_0000));
        Assert.Equal(efault, Call(dispatcher, v, m, EventChannelOp.Status, 0x10000 + 4096 - 8)); // struct crosses the end

        ulong enosys = unchecked((ulong)XenErrno.ENOSYS.Negated());
        Assert.Equal(enosys, Call(dispatcher, v, m, (EventChannelOp)15, 0x10000)); // past EVTCHNOP_reset_cont (14)
        Assert.Equal(enosys, Call(dispatcher, v, m, (EventChannelOp)99, 0x10000));
        var regs = new HypercallRegisters { Rax = (ulong)HypercallNumber.EventChannelOpCompat, Rdi = 0x10000 };
        dispatcher.Dispatch(v, ref regs, GuestX86Mode.Long64, 0, m);
        Assert.Equal(enosys, regs.Rax);

        m.Write(0x10000, new EvtchnBindPirq { Pirq = 3 });
        Assert.Equal(unchecked((ulong)XenErrno.EINVAL.Negated()), Call(dispatcher, v, m, EventChannelOp.BindPirq, 0x10000));
    }

    [Fact]
    public void Reset_cont_from_a_guest_gets_reset_s_checks_then_ebusy()
    {
        // Xen 4.17's do_event_channel_op takes EVTCHNOP_reset_cont (14, Xen-internal: the continuation of a preempted
        // reset) like EVTCHNOP_reset: -EFAULT, -ESRCH, XSM, the paused check; then evtchn_reset(d, resuming) finds no
        // reset in progress (d->next_evtchn is 0) and answers -EBUSY. This package's resets are never preempted.
        const EventChannelOp ResetCont = (EventChannelOp)14;
        var hv = new EventChannelHypervisor();
        using var g = new TestGuest(hv, 1, vcpus: 1);
        using var other = new TestGuest(hv, 2, vcpus: 1);
        var dispatcher = new HypercallDispatcher<Vcpu>();
        new EventChannelHypercalls<Vcpu>(hv, new Callers()).Register(dispatcher);
        var v = new Vcpu(g.Domain);
        var m = new PageMemory();
        var ipi = new EvtchnBindIpi();
        Assert.Equal(0, hv.BindIpi(g.Domain, ref ipi));

        Assert.Equal((ulong)XenErrno.EFAULT.Negated(), Call(dispatcher, v, m, ResetCont, 0x1000));
        m.Write(0x10000, new EvtchnReset { Dom = 9 });
        Assert.Equal((ulong)XenErrno.ESRCH.Negated(), Call(dispatcher, v, m, ResetCont, 0x10000));
        m.Write(0x10000, new EvtchnReset { Dom = 2 });
        Assert.Equal((ulong)XenErrno.EPERM.Negated(), Call(dispatcher, v, m, ResetCont, 0x10000));
        m.Write(0x10000, new EvtchnReset { Dom = DomainId.Self });
        Assert.Equal((ulong)XenErrno.EBUSY.Negated(), Call(dispatcher, v, m, ResetCont, 0x10000));
        Assert.Equal(ChannelState.Ipi, hv.GetState(g.Domain, ipi.Port));   // nothing closed
    }
}
