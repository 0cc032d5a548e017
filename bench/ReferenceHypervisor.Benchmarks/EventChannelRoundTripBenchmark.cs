using BenchmarkDotNet.Attributes;
using Iced.Intel;
using VmmKit.Ept;
using VmmKit.EventChannel;
using VmmKit.Hypercall;
using VmmKit.ReferenceHypervisor.Demo;
using static Iced.Intel.AssemblerRegisters;

namespace VmmKit.ReferenceHypervisor.Benchmarks;

/// <summary>
/// An event-channel round trip between two domains of one hypervisor (issue 15's "event-channel round trip between two
/// domains in µs"): domains "ping" and "pong" share an interdomain channel; each one waits until its port is pending in
/// its <c>shared_info</c> (mapped with <c>XENMEM_add_to_physmap</c>, <c>XENMAPSPACE_shared_info</c>), clears the bit
/// and sends on its port (<c>EVTCHNOP_send</c>), yielding (<c>SCHEDOP_yield</c>) while nothing is pending. One round
/// trip is one slice of each: ping's send reaches pong's bitmap through VmmKit.EventChannel, pong's send comes back. It
/// includes the VMCALL exits, the hypercall dispatch, the event delivery and the scheduling of one host CPU between the
/// two vCPUs, as Xen does on one physical CPU; both guests count what they receive, checked in the setup.
/// </summary>
[MemoryDiagnoser]
public class EventChannelRoundTripBenchmark
{
    private const int RoundTrips = 1_000;
    private const uint Load = 0x100000, HypercallPage = Load + 0x1000, Data = Load + 0x2000, SharedInfo = 0x800000;
    private const uint SendArg = Data, AddToPhysmapArg = Data + 0x10, Counter = Data + 0x20;
    private Machine _machine = null!;
    private VirtualCpu _ping = null!, _pong = null!;
    private Domain _pingDomain = null!;

    [GlobalSetup]
    public void Setup()
    {
        // No in-process Dom0 services (XenStore, console backends): nothing but the two guests and the hypervisor.
        _machine = new Machine(64 << 20, ProcessorProviders.CreateDefault(), MachineMemoryBacking.Anonymous, inProcessBackend: false);
        // The channel first (host side, as a toolstack would): ping's port unbound for pong, pong binds it.
        _pingDomain = Create("ping");
        Domain pong = Create("pong");
        var alloc = new EvtchnAllocUnbound { Dom = DomainId.Self, RemoteDom = pong.Id };
        Check(_machine.Events.AllocUnbound(_pingDomain.Events, ref alloc));
        var bind = new EvtchnBindInterdomain { RemoteDom = _pingDomain.Id, RemotePort = alloc.Port };
        Check(_machine.Events.BindInterdomain(pong.Events, ref bind));   // pong's port starts pending: the first ball
        _ping = WithPort(_pingDomain, alloc.Port);
        _pong = WithPort(pong, bind.LocalPort);

        RoundTrip(100);
        uint received = ReceivedByPing();
        if (received < 99)
            throw new InvalidOperationException($"ping received {received} events in 100 round trips");
    }

    [GlobalCleanup]
    public void Cleanup() => _machine.Dispose();

    /// <summary><see cref="RoundTrips"/> round trips ping → pong → ping.</summary>
    [Benchmark(OperationsPerInvoke = RoundTrips)]
    public void PingPong() => RoundTrip(RoundTrips);

    private void RoundTrip(int count)
    {
        for (int i = 0; i < count; i++)
        {
            _ping.IsBlocked = false;
            _ping.RunSlice();
            _pong.IsBlocked = false;
            _pong.RunSlice();
        }
    }

    private uint ReceivedByPing()
    {
        Span<byte> b = stackalloc byte[4];
        _pingDomain.Physical.TryRead(new GuestPhysicalAddress(Counter), b, out _);
        return BitConverter.ToUInt32(b);
    }

    private Domain Create(string name)
    {
        // A placeholder image: the real one needs the port, known once both domains exist.
        if (!_machine.TryCreateDomain(new DomainConfig(name, BuildGuest(0), 16 << 20, XenStore: false), out var domain, out string error))
            throw new InvalidOperationException(error);
        return domain!;
    }

    private static VirtualCpu WithPort(Domain domain, uint port)
    {
        // Same instruction lengths for any port (it is an imm32, a disp32 and an imm8): the code is rewritten in place
        // before the vCPU first runs.
        if (!domain.Physical.TryWrite(new GuestPhysicalAddress(Load), GuestCode(port), out _))
            throw new InvalidOperationException("cannot write the guest");
        return domain.Vcpus[0];
    }

    private static void Check(long rc)
    {
        if (rc < 0)
            throw new InvalidOperationException($"event channel setup failed: {rc}");
    }

    private static byte[] BuildGuest(uint port) => Elf32ImageWriter.Write(Load, GuestCode(port), 0x4000, Load);

    /// <summary>
    /// wrmsr(hypercall page); add_to_physmap(shared_info at <see cref="SharedInfo"/>); then forever: yield until the port
    /// is pending in evtchn_pending (offset 2048), clear it, count it, EVTCHNOP_send on it.
    /// </summary>
    private static byte[] GuestCode(uint port)
    {
        var a = new Assembler(32);
        Label wait = a.CreateLabel(), got = a.CreateLabel();
        a.mov(esp, Load + 0x4000);
        a.mov(ecx, 0x40000000);
        a.mov(eax, HypercallPage);
        a.xor(edx, edx);
        a.wrmsr();
        // struct xen_add_to_physmap (i386): domid DOMID_SELF, size 0, space XENMAPSPACE_shared_info, idx 0, gpfn.
        a.mov(__dword_ptr[(ulong)(AddToPhysmapArg)], DomainId.Self);
        a.mov(__dword_ptr[(ulong)(AddToPhysmapArg + 4)], 0);
        a.mov(__dword_ptr[(ulong)(AddToPhysmapArg + 8)], 0);
        a.mov(__dword_ptr[(ulong)(AddToPhysmapArg + 12)], SharedInfo >> 12);
        a.mov(ebx, (uint)MemoryOp.AddToPhysmap);
        a.mov(ecx, AddToPhysmapArg);
        a.mov(eax, HypercallPage + ((uint)HypercallNumber.MemoryOp * 32));
        a.call(eax);
        a.mov(__dword_ptr[(ulong)(SendArg)], port);
        a.Label(ref wait);
        a.bt(__dword_ptr[(ulong)(SharedInfo + 2048 + ((port / 32) * 4))], (byte)(port % 32));
        a.jc(got);
        a.xor(ebx, ebx);                                   // SCHEDOP_yield
        a.xor(ecx, ecx);
        a.mov(eax, HypercallPage + ((uint)HypercallNumber.SchedOp * 32));
        a.call(eax);
        a.jmp(wait);
        a.Label(ref got);
        a.@lock.btr(__dword_ptr[(ulong)(SharedInfo + 2048 + ((port / 32) * 4))], (byte)(port % 32));
        a.inc(__dword_ptr[(ulong)(Counter)]);
        a.mov(ebx, (uint)EventChannelOp.Send);
        a.mov(ecx, SendArg);
        a.mov(eax, HypercallPage + ((uint)HypercallNumber.EventChannelOp * 32));
        a.call(eax);
        a.jmp(wait);
        var stream = new MemoryStream();
        a.Assemble(new StreamCodeWriter(stream), Load);
        return stream.ToArray();
    }
}
