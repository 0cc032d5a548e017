using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net.Sockets;
using VmmKit.Ept;
using VmmKit.Hypercall;

namespace VmmKit.ReferenceHypervisor.Host;

/// <summary>
/// The hypervisor's end of the Dom0 channel (docs/dom0-abi.md): a Unix socket at <c>RUNDIR/hypervisor.sock</c> that one
/// Dom0 process at a time connects to. It is domain 0's processor: requests are queued by the session's reader thread
/// and served on the scheduler's thread between time slices (<see cref="Poll"/>), so they see a consistent machine.
/// HYPERCALL goes through the machine's hypercall table as domain 0; MMAPBATCH hands out machine frames of another
/// domain and keeps a reference on each until UNMAP or disconnection. A Dom0 that sends a malformed message or dies is
/// dropped; its domains keep running and the next Dom0 to connect takes its place.
/// </summary>
internal sealed class Dom0Channel : IMachineHost, IDisposable
{
    private const int WelcomeSize = 32;
    private const int HypercallSize = 48;

    private readonly Machine _machine;
    private readonly ControlDomain _dom0;
    private readonly ForeignMappings _foreign;
    private readonly Socket _listener;
    private readonly ConcurrentQueue<(Dom0Session Session, Dom0MessageType Type, ulong Id, byte[] Payload)> _requests = new();
    private readonly AutoResetEvent _work = new(false);
    private Dom0Session? _session;
    private volatile bool _stopping;

    // Internal queue markers (never on the wire).
    private const Dom0MessageType Connected = (Dom0MessageType)0x7001;
    private const Dom0MessageType Disconnected = (Dom0MessageType)0x7002;
    private const Dom0MessageType Drained = (Dom0MessageType)0x7003;

    /// <summary>Listens on <paramref name="socketPath"/> for Dom0.</summary>
    public Dom0Channel(Machine machine, ControlDomain dom0, string socketPath)
    {
        _machine = machine;
        _dom0 = dom0;
        _foreign = new ForeignMappings(machine.Frames);
        machine.Foreign = _foreign;
        SocketPath = socketPath;
        File.Delete(socketPath);
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        // Bound under a temporary name and renamed once listening, so the socket appears only when it accepts.
        string binding = socketPath + ".new";
        File.Delete(binding);
        _listener.Bind(new UnixDomainSocketEndPoint(binding));
        _listener.Listen(4);
        File.Move(binding, socketPath, overwrite: true);
        new Thread(AcceptLoop) { IsBackground = true, Name = "dom0-channel-accept" }.Start();
    }

    /// <summary>The socket's path.</summary>
    public string SocketPath { get; }

    /// <summary>Foreign frames Dom0 holds.</summary>
    public ForeignMappings Foreign => _foreign;

    /// <summary>True while a Dom0 is connected.</summary>
    public bool IsConnected => _session is { IsClosed: false };

    /// <summary>Asks <see cref="Machine.Run"/> to return.</summary>
    public void Stop()
    {
        _stopping = true;
        _work.Set();
    }

    private void AcceptLoop()
    {
        while (!_stopping)
        {
            Socket socket;
            try
            {
                socket = _listener.Accept();
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                return;
            }

            var session = new Dom0Session(socket, Enqueue, s => Enqueue(s, Disconnected, 0, []));
            Enqueue(session, Connected, 0, []);
        }
    }

    private void Enqueue(Dom0Session session, Dom0MessageType type, ulong id, byte[] payload)
    {
        _requests.Enqueue((session, type, id, payload));
        _work.Set();
    }

    /// <inheritdoc/>
    public bool Poll()
    {
        bool any = false;
        while (_requests.TryDequeue(out var r))
        {
            any = true;
            try
            {
                Serve(r.Session, r.Type, r.Id, r.Payload);
            }
            catch (Exception e)
            {
                // A hypervisor bug a request provoked: the request's Dom0 is dropped, the machine carries on.
                _machine.Log($"dom0 channel: dropping Dom0 after a host exception: {e.GetType().Name}: {e.Message}");
                r.Session.Close();
            }
        }

        return any;
    }

    /// <inheritdoc/>
    public bool HoldsWork => !_requests.IsEmpty || (IsConnected && _dom0.HoldsWork);

    /// <inheritdoc/>
    public bool WaitForWork()
    {
        if (_stopping)
            return false;
        _work.WaitOne(100);
        return !_stopping;
    }

    private void Serve(Dom0Session session, Dom0MessageType type, ulong id, byte[] payload)
    {
        switch (type)
        {
            case Connected:
                Attach(session);
                return;
            case Disconnected:
                if (_session == session)
                    Detach();
                return;
            case Drained:
                if (_session == session)
                    _dom0.RedeliverPending();

                return;
        }

        if (session != _session || session.IsClosed)
            return;
        switch (type)
        {
            case Dom0MessageType.Hypercall when payload.Length == HypercallSize:
                Reply(session, type, id, Hypercall(payload));
                return;
            case Dom0MessageType.MmapBatch when TryMmapBatch(payload, out var results):
                session.Send(type | (Dom0MessageType)Dom0Wire.ReplyBit, id, results);
                return;
            case Dom0MessageType.Unmap when TryUnmap(payload, out long rc):
                Reply(session, type, id, rc);
                return;
            default:
                _machine.Log($"dom0 channel: malformed {type} request ({payload.Length} bytes); Dom0 disconnected");
                session.Close();
                return;
        }
    }

    /// <summary>
    /// The Dom0 process went: what its privcmd, gntdev and evtchn handles held goes with it, as Linux releases them when a
    /// process's files close. Foreign frames are released (privcmd's munmap), every grant mapping of domain 0 is unmapped
    /// (gntdev_release; Xen's gnttab_release_mappings walk) and every port of domain 0 is closed (evtchn_release, each
    /// bound port unbound and closed: an interdomain peer is left unbound for domain 0, so the next Dom0 binds it again).
    /// Domain 0 itself, its memory and its grant table stay; so do the guests.
    /// </summary>
    private void Detach()
    {
        _session = null;
        _dom0.EventSink = null;
        _dom0.ForgetDelivered();
        int frames = _foreign.Count;
        _foreign.ReleaseAll();
        int grants = _machine.Grants.ReleaseMappings(_dom0.Domain.Grants);
        long ports = _machine.Events.Reset(_dom0.Domain.Events, DomainId.Self);
        _machine.Log($"dom0 channel: Dom0 disconnected; released {frames} foreign frame(s), {grants} grant mapping(s), closed its ports (rc {ports}); domains keep running");
    }

    private void Attach(Dom0Session session)
    {
        if (_session is { } previous)
        {
            if (!previous.IsClosed)
            {
                // One control domain at a time: a second connection is refused by closing it.
                session.Close();
                return;
            }

            Detach();   // gone, its Disconnected marker still queued: what it held goes before the next one starts
        }

        Span<byte> welcome = stackalloc byte[Dom0Wire.HeaderSize + WelcomeSize];
        Dom0Wire.WriteHeader(welcome, Dom0MessageType.Welcome, 0, WelcomeSize);
        _dom0.WriteWelcome(welcome[Dom0Wire.HeaderSize..]);
        if (!UnixRights.TrySend(session.Socket.Handle, welcome, _machine.Memory.FileDescriptor))
        {
            session.Close();
            return;
        }

        _session = session;
        session.Start();
        _dom0.EventSink = port =>
        {
            Span<byte> p = stackalloc byte[8];
            BinaryPrimitives.WriteUInt32LittleEndian(p, port);
            BinaryPrimitives.WriteUInt32LittleEndian(p[4..], 0);
            return session.TrySendEvent(p);
        };
        session.Drained = () => Enqueue(session, Drained, 0, []);
        _machine.Log("dom0 channel: Dom0 connected");
        _dom0.RedeliverPending();
    }

    private static void Reply(Dom0Session session, Dom0MessageType type, ulong id, long value)
    {
        Span<byte> p = stackalloc byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(p, value);
        session.Send(type | (Dom0MessageType)Dom0Wire.ReplyBit, id, p);
    }

    /// <summary>HYPERCALL {op, arg[5]}: dispatched as domain 0's 64-bit hypercall; continuations are run to completion.</summary>
    private long Hypercall(ReadOnlySpan<byte> p)
    {
        var regs = new HypercallRegisters
        {
            Rax = BinaryPrimitives.ReadUInt64LittleEndian(p),
            Rdi = BinaryPrimitives.ReadUInt64LittleEndian(p[8..]),
            Rsi = BinaryPrimitives.ReadUInt64LittleEndian(p[16..]),
            Rdx = BinaryPrimitives.ReadUInt64LittleEndian(p[24..]),
            R10 = BinaryPrimitives.ReadUInt64LittleEndian(p[32..]),
            R8 = BinaryPrimitives.ReadUInt64LittleEndian(p[40..]),
        };
        // A preempted call (HypercallPreemption) is continued at once: the guests are parked while domain 0 is served.
        do
        {
            Hypercalls.HypercallPreemption.BeginDispatch(_dom0.Caller);
        }
        while (_machine.Hypercalls.Dispatch(_dom0.Caller, ref regs, GuestX86Mode.Long64, 0, _dom0.Memory) == HypercallDisposition.Preempted);

        return (long)regs.Rax;
    }

    /// <summary>
    /// MMAPBATCH {domid, pad, count, gfn[count]} → {mfn or -errno per gfn}: references each frame (privcmd's
    /// IOCTL_PRIVCMD_MMAPBATCH_V2 with its per-frame error array). A missing domain is -ESRCH for every frame.
    /// </summary>
    private bool TryMmapBatch(byte[] payload, out byte[] results)
    {
        results = [];
        if (payload.Length < 8)
            return false;
        ushort domid = BinaryPrimitives.ReadUInt16LittleEndian(payload);
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(payload.AsSpan(4));
        if (count > Dom0Wire.MaxBatch || payload.Length != 8 + (count * 8))
            return false;
        results = new byte[count * 8];
        var target = _machine.FindDomain(domid);
        for (int i = 0; i < count; i++)
        {
            ulong gfn = BinaryPrimitives.ReadUInt64LittleEndian(payload.AsSpan(8 + (i * 8)));
            long r;
            if (target is null || target.IsDying)
                r = XenErrno.ESRCH.Negated();
            else if (gfn >= 1ul << 40 || !target.Ept.TryLookup(new GuestFrameNumber(gfn), out var frame, out _) ||
                     (target.Grants is { } g && _machine.Grants.IsGrantMapping(g, new GuestFrameNumber(gfn))) ||
                     !_foreign.TryTake(frame, OwnerOfOwnPage(target, frame)))
                r = XenErrno.EINVAL.Negated();   // unpopulated, or not the domain's own page (a grant mapping: !p2m_is_ram)
            else
                r = (long)frame.Value;

            BinaryPrimitives.WriteInt64LittleEndian(results.AsSpan(i * 8), r);
        }

        return true;
    }

    /// <summary>
    /// The owner a page of <paramref name="target"/>'s physmap has when it is the domain's own: its RAM, or one of its
    /// grant-table frames (VmmKit.GrantTable allocates those to DOMID_XEN; Xen shares them with the domain, and libxc's
    /// <c>xc_dom_gnttab_hvm_seed</c> maps one to seed the reserved entries).
    /// </summary>
    private static FrameOwner OwnerOfOwnPage(Domain target, MachineFrameNumber frame) =>
        target.IsGrantTableFrame(frame) ? FrameOwner.Hypervisor : target.Owner;

    /// <summary>UNMAP {count, pad, mfn[count]} → 0, or -EINVAL (and nothing released) when Dom0 holds one of them not.</summary>
    private bool TryUnmap(byte[] payload, out long rc)
    {
        rc = 0;
        if (payload.Length < 8)
            return false;
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(payload);
        if (count > Dom0Wire.MaxBatch || payload.Length != 8 + (count * 8))
            return false;
        var frames = new MachineFrameNumber[count];
        var seen = new Dictionary<ulong, int>();
        for (int i = 0; i < count; i++)
        {
            frames[i] = new MachineFrameNumber(BinaryPrimitives.ReadUInt64LittleEndian(payload.AsSpan(8 + (i * 8))));
            seen[frames[i].Value] = seen.TryGetValue(frames[i].Value, out int n) ? n + 1 : 1;
        }

        foreach (var (f, n) in seen)
        {
            if (!_foreign.IsHeld(new MachineFrameNumber(f)) || _foreign.ReferencesOf(new MachineFrameNumber(f)) < n)
            {
                rc = XenErrno.EINVAL.Negated();
                return true;
            }
        }

        foreach (var f in frames)
            _foreign.Release(f);
        return true;
    }

    /// <summary>Closes the socket and the connection.</summary>
    public void Dispose()
    {
        Stop();
        _listener.Dispose();
        _session?.Close();
        File.Delete(SocketPath);
    }
}
