using System.Runtime.InteropServices;
using VmmKit.EventChannel;
using VmmKit.Ept;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// The in-process console backend for <c>vmmkit-hv boot</c>, which has no Dom0: it plays domid 0's part of
/// xenconsoled. For every guest it binds an event channel to the guest's HVM_PARAM_CONSOLE_EVTCHN port (allocated
/// unbound for domid 0 at build time, as Xen's toolstack does), and when the guest notifies it copies the guest's
/// output from the <c>xencons_interface</c> ring (xen/io/console.h) at HVM_PARAM_CONSOLE_PFN to the domain's console
/// (stdout in the CLI), then notifies back. It reads the ring page through the machine frame the toolstack gave the
/// guest, and never trusts the guest's indexes beyond the ring's size.
/// </summary>
internal sealed unsafe class ConsoleBackend : IDisposable
{
    private readonly Machine _machine;
    private readonly List<Connection> _connections = [];
    private readonly byte* _sharedInfo;
    private bool _kicked;

    /// <summary>Creates the backend domain (domid 0) in <paramref name="events"/>.</summary>
    public ConsoleBackend(Machine machine, EventChannelHypervisor events, IEventChannelUpcall upcall)
    {
        _machine = machine;
        Events = events.CreateDomain(new EventChannelDomainOptions { Id = Machine.BackendDomainId, VcpuCount = 1, Upcall = upcall });
        // The backend's own shared_info: a host page (it is not a guest), so its pending bits have somewhere to live.
        _sharedInfo = (byte*)NativeMemory.AlignedAlloc(Page.PageSize, Page.PageSize);
        new Span<byte>(_sharedInfo, Page.PageSize).Clear();
        Events.SetSharedInfo(_sharedInfo);
    }

    /// <summary>The backend's event-channel state (domid 0).</summary>
    public EventChannelDomain Events { get; }

    private sealed record Connection(Domain Guest, MachineFrameNumber Ring, uint LocalPort);

    /// <summary>Connects to <paramref name="guest"/>'s console: binds to its unbound console port; returns 0 or a negated errno.</summary>
    public long Connect(Domain guest, MachineFrameNumber ring, uint guestPort)
    {
        var bind = new EvtchnBindInterdomain { RemoteDom = guest.Id, RemotePort = guestPort };
        long rc = Events.Hypervisor.BindInterdomain(Events, ref bind);
        if (rc == 0)
            _connections.Add(new Connection(guest, ring, bind.LocalPort));
        return rc;
    }

    /// <summary>An event arrived for the backend: the rings are read at the next <see cref="Poll"/>.</summary>
    public void Kick() => _kicked = true;

    /// <summary>Copies pending guest output to the consoles (after a notification, and always when <paramref name="force"/>).</summary>
    public void Poll(bool force = false)
    {
        if (!_kicked && !force)
            return;
        _kicked = false;
        // The guest's notification left bits pending in the backend's shared_info; clear them as a guest's handler
        // would (xen.h 2-level protocol): vcpu_info[0]'s upcall_pending and pending_sel, then the port words.
        // Leaving them set would swallow every later notification (a send only raises an upcall on a 0 -> 1 edge).
        ref var shared = ref *(Hypercall.SharedInfo*)_sharedInfo;
        ref var vcpu0 = ref System.Runtime.CompilerServices.Unsafe.As<Hypercall.SharedInfo.VcpuInfos, Hypercall.VcpuInfo>(ref shared.VcpuInfo);
        Volatile.Write(ref vcpu0.EvtchnUpcallPending, (byte)0);
        ulong selectors = Interlocked.Exchange(ref vcpu0.EvtchnPendingSel, 0);
        ref ulong words = ref System.Runtime.CompilerServices.Unsafe.As<Hypercall.SharedInfo.EventChannelWords, ulong>(ref shared.EvtchnPending);
        for (int w = 0; selectors != 0; w++, selectors >>= 1)
        {
            if ((selectors & 1) != 0)
                Interlocked.Exchange(ref System.Runtime.CompilerServices.Unsafe.Add(ref words, w), 0);
        }
        foreach (var c in _connections)
        {
            if (c.Guest.State == DomainState.Crashed && !force)
                continue;
            if (Drain(c))
                Events.Hypervisor.Send(Events, c.LocalPort);
        }
    }

    private bool Drain(Connection c)
    {
        ref XenconsInterface ring = ref MemoryMarshal.AsRef<XenconsInterface>(_machine.Memory.GetFrame(c.Ring));
        uint cons = Volatile.Read(ref ring.OutCons);
        uint prod = Volatile.Read(ref ring.OutProd);
        // A guest that claims more than the ring holds gets its indexes resynchronised (xenconsoled discards them too).
        if (prod - cons > XenconsInterface.OutSize)
        {
            Volatile.Write(ref ring.OutCons, prod);
            return true;
        }

        if (prod == cons)
            return false;
        Span<byte> out_ = ring.Out;
        while (cons != prod)
        {
            c.Guest.Console.Write(out_[(int)(cons & (XenconsInterface.OutSize - 1))]);
            cons++;
        }

        Volatile.Write(ref ring.OutCons, cons);
        return true;
    }

    /// <summary>Releases the backend's page.</summary>
    public void Dispose() => NativeMemory.AlignedFree(_sharedInfo);
}
