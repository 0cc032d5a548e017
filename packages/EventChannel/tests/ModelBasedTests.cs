using CsCheck;
using VmmKit.Hypercall;

namespace VmmKit.EventChannel.Tests;

/// <summary>
/// Random sequences of operations from three domains (one of them the control domain), each
/// compared with <see cref="ReferenceModel"/>: every return value, every status, and after each
/// step every port's state and guest-visible bits; the guests also mask, unmask, clear pending
/// bits and drain events in guest memory in between, and a drain must deliver exactly the model's
/// events, never one without an upcall. Both ABIs.
/// </summary>
public class ModelBasedTests
{
    private readonly record struct Op(int Kind, int Dom, int Port, int Vcpu, int Extra)
    {
        public override string ToString() => $"{(Kind < Names.Length ? Names[Kind] : "send")}(d{Dom}, p{Port}, v{Vcpu}, x{Extra})";
    }

    private static readonly string[] Names =
        ["alloc_unbound", "bind_interdomain", "bind_virq", "bind_ipi", "close", "send", "status", "bind_vcpu", "unmask",
         "set_priority", "guest_mask", "guest_unmask", "guest_clear_pending", "drain", "send_virq", "send_global_virq", "reset"];

    private static readonly Gen<Op> GenOp =
        Gen.Select(Gen.Int[0, 21], Gen.Int[0, 2], Gen.Frequency((6, Gen.Int[0, 13]), (1, Gen.Int[0, 70])), Gen.Int[0, 2], Gen.Int[0, 25],
                   (k, d, p, v, x) => new Op(k, d, p, v, x));

    [Fact]
    public void Two_level_matches_the_model() =>
        GenOp.Array[1, 150].Sample(ops => Run(ops, fifo: false), iter: 100);

    [Fact]
    public void Fifo_matches_the_model() =>
        GenOp.Array[1, 150].Sample(ops => Run(ops, fifo: true), iter: 100);

    private static void Run(Op[] ops, bool fifo)
    {
        var hv = new EventChannelHypervisor();
        var model = new ReferenceModel(fifo);
        var guests = ReferenceModel.DomainIds
            .Select(id => new TestGuest(hv, id, ReferenceModel.Vcpus, ReferenceModel.MaxPorts, control: id == 0))
            .ToArray();
        try
        {
            if (fifo)
            {
                foreach (var g in guests)
                    g.InitFifo();
            }
            hv.SetGlobalVirqHandler(Virq.DomExc, guests[0].Domain);
            var upcallsAtDrain = new long[guests.Length, ReferenceModel.Vcpus];
            for (int step = 0; step < ops.Length; step++)
            {
                string where = $"step {step} {ops[step]} of [{string.Join(", ", ops)}]";
                Apply(ops[step], hv, model, guests, upcallsAtDrain, where);
                Compare(hv, model, guests, upcallsAtDrain, where);
            }
        }
        finally
        {
            foreach (var g in guests)
                g.Dispose();
        }
    }

    private static void Apply(Op op, EventChannelHypervisor hv, ReferenceModel model, TestGuest[] guests, long[,] upcallsAtDrain, string where)
    {
        TestGuest g = guests[op.Dom];
        EventChannelDomain d = g.Domain;
        ReferenceModel.Domain m = model.Domains[op.Dom];
        uint port = (uint)op.Port, vcpu = (uint)op.Vcpu;
        ushort domArg = ReferenceModel.DomainArgs[op.Extra % ReferenceModel.DomainArgs.Length];
        long expected, actual;
        switch (op.Kind)
        {
            case 0:
            {
                ushort remote = ReferenceModel.DomainArgs[op.Vcpu % ReferenceModel.DomainArgs.Length];
                var a = new EvtchnAllocUnbound { Dom = domArg, RemoteDom = remote };
                actual = hv.AllocUnbound(d, ref a);
                expected = model.AllocUnbound(m, domArg, remote, out uint p);
                if (expected == 0)
                    Assert.True(p == a.Port, $"port {a.Port} vs model {p} at {where}");
                break;
            }
            case 1:
            {
                var a = new EvtchnBindInterdomain { RemoteDom = domArg, RemotePort = port };
                actual = hv.BindInterdomain(d, ref a);
                expected = model.BindInterdomain(m, domArg, port, out uint p);
                if (expected == 0)
                    Assert.True(p == a.LocalPort, $"port {a.LocalPort} vs model {p} at {where}");
                break;
            }
            case 2:
            {
                var a = new EvtchnBindVirq { Virq = (uint)op.Extra, Vcpu = vcpu };
                actual = hv.BindVirq(d, ref a);
                expected = model.BindVirq(m, (uint)op.Extra, vcpu, out uint p);
                if (expected == 0)
                    Assert.True(p == a.Port, $"port {a.Port} vs model {p} at {where}");
                break;
            }
            case 3:
            {
                var a = new EvtchnBindIpi { Vcpu = vcpu };
                actual = hv.BindIpi(d, ref a);
                expected = model.BindIpi(m, vcpu, out uint p);
                if (expected == 0)
                    Assert.True(p == a.Port, $"port {a.Port} vs model {p} at {where}");
                break;
            }
            case 4:
                actual = hv.Close(d, port);
                expected = model.Close(m, port);
                break;
            case 6:
            {
                var a = new EvtchnStatus { Dom = domArg, Port = port };
                actual = hv.Status(d, ref a);
                expected = model.Status(m, domArg, port, out EvtchnStatus s);
                if (expected == 0)
                {
                    Assert.True(s.Status == a.Status && s.Vcpu == a.Vcpu, $"status {a.Status}/{a.Vcpu} vs model {s.Status}/{s.Vcpu} at {where}");
                    if (s.Status is (uint)EventChannelStatusCode.Unbound or (uint)EventChannelStatusCode.Interdomain)
                        Assert.True(s.U.Dom == a.U.Dom, $"status dom {a.U.Dom} vs {s.U.Dom} at {where}");
                    if (s.Status == (uint)EventChannelStatusCode.Interdomain)
                        Assert.True(s.U.Port == a.U.Port, $"status port at {where}");
                    if (s.Status == (uint)EventChannelStatusCode.Virq)
                        Assert.True(s.U.Virq == a.U.Virq, $"status virq at {where}");
                }
                break;
            }
            case 7:
                actual = hv.BindVcpu(d, new EvtchnBindVcpu { Port = port, Vcpu = vcpu });
                expected = model.BindVcpu(m, port, vcpu);
                break;
            case 8:
                actual = hv.Unmask(d, port);
                expected = model.Unmask(m, port);
                break;
            case 9:
                actual = hv.SetPriority(d, new EvtchnSetPriority { Port = port, Priority = (uint)op.Extra % 17 });
                expected = model.SetPriority(m, port, (uint)op.Extra % 17);
                break;
            case 10:
                g.Mask(port % ReferenceModel.ValidPorts);
                m.Ports[port % ReferenceModel.ValidPorts].Masked = true;
                return;
            case 11:
                g.Unmask(port % ReferenceModel.ValidPorts);
                model.GuestUnmask(m, port % ReferenceModel.ValidPorts);
                return;
            case 12:
                g.ClearPending(port % ReferenceModel.ValidPorts);
                m.Ports[port % ReferenceModel.ValidPorts].Pending = false;
                return;
            case 13:
            {
                var seen = new List<uint>();
                for (int v = 0; v < ReferenceModel.Vcpus; v++)
                {
                    upcallsAtDrain[op.Dom, v] = g.Upcalls.Count(v);
                    Assert.True(g.Drain(v, seen), $"event found on vCPU {v} without an upcall at {where}");
                }
                var want = model.Drain(m);
                Assert.True(want.SetEquals(seen) && seen.Count == want.Count,
                    $"delivered [{string.Join(",", seen)}] vs model [{string.Join(",", want)}] at {where}");
                return;
            }
            case 14:
            {
                uint virq = op.Extra % 2 == 0 ? (uint)Virq.Timer : (uint)Virq.Debug;
                hv.SendVirq(d, (int)vcpu % ReferenceModel.Vcpus, (Virq)virq);
                model.SendVirq(m, (int)vcpu % ReferenceModel.Vcpus, virq);
                return;
            }
            case 15:
            {
                hv.SendGlobalVirq(Virq.DomExc);
                ReferenceModel.Domain d0 = model.Domains[0];
                uint p = d0.VirqToPort[0, (int)Virq.DomExc];
                if (p != 0 && d0.Ports[p].State == ChannelState.Virq)
                    ReferenceModel.SetPending(d0, p);
                return;
            }
            case 16 when !m.Fifo:
                actual = hv.Reset(d, domArg);
                expected = model.Reset(m, domArg);
                break;
            default:
                actual = hv.Send(d, port);
                expected = model.Send(m, port);
                break;
        }
        Assert.True(expected == actual, $"rc {actual} vs model {expected} at {where}");
    }

    private static unsafe void Compare(EventChannelHypervisor hv, ReferenceModel model, TestGuest[] guests, long[,] upcallsAtDrain, string where)
    {
        for (int i = 0; i < guests.Length; i++)
        {
            TestGuest g = guests[i];
            ReferenceModel.Domain m = model.Domains[i];
            for (uint port = 0; port < ReferenceModel.ValidPorts; port++)
            {
                ReferenceModel.Port p = m.Ports[port];
                Assert.True(p.State == hv.GetState(g.Domain, port), $"d{m.Id} port {port}: {hv.GetState(g.Domain, port)} vs model {p.State} at {where}");
                Assert.True(p.Pending == hv.IsPending(g.Domain, port), $"d{m.Id} port {port} pending {!p.Pending} vs model {p.Pending} at {where}");
                Assert.True(p.Masked == g.GuestMasked(port), $"d{m.Id} port {port} masked at {where}");
                if (m.Fifo)
                    Assert.True(p.Linked == g.GuestLinked(port), $"d{m.Id} port {port} linked {g.GuestLinked(port)} vs model {p.Linked} at {where}");
            }
            for (int v = 0; v < ReferenceModel.Vcpus; v++)
            {
                // An upcall flag the hypervisor set must come with a RaiseUpcall since the last drain.
                if (g.UpcallPending(v) != 0)
                    Assert.True(g.Upcalls.Count(v) > upcallsAtDrain[i, v], $"d{m.Id} vCPU {v}: upcall_pending without an upcall at {where}");
                if (!m.Fifo && g.UpcallPending(v) == 0)
                    Assert.True(g.PendingSel(v) == 0, $"d{m.Id} vCPU {v}: selector without upcall_pending at {where}");
                if (m.Fifo && g.UpcallPending(v) == 0)
                    Assert.True(*g.Ready(v) == 0, $"d{m.Id} vCPU {v}: READY without upcall_pending at {where}");
            }
        }
    }
}
