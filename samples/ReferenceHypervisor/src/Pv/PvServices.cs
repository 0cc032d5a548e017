using System.Collections.Concurrent;
using VmmKit.Backends.Block;
using VmmKit.Backends.Console;
using VmmKit.Backends.Xenbus;
using VmmKit.Ept;
using VmmKit.EventChannel;
using VmmKit.GrantTable;
using VmmKit.XenStore.Client;
using VmmKit.XenStore.Daemon;
using VmmKit.XenStore.Transports;

namespace VmmKit.ReferenceHypervisor.Pv;

/// <summary>
/// The quick path's Dom0 in the hypervisor's process (<c>vmmkit-hv boot</c> has no Dom0): domid 0 as a host-side domain
/// of VmmKit.EventChannel, a grant-mapping window in its own guest-physical space, and the services a Xen toolstack
/// starts, all from the packages and reaching guests only through event channels and grants: xenstored
/// (VmmKit.XenStore, serving each domain's store ring), the console backend and the block backend (VmmKit.Backends).
/// The toolstack part seeds each domain's reserved grants (<c>GNTTAB_RESERVED_CONSOLE</c>/<c>_XENSTORE</c>, as
/// <c>xc_dom_gnttab_seed</c>), writes its XenStore tree and adds its disks.
/// </summary>
internal sealed class PvServices : IDisposable
{
    /// <summary>Where Dom0 maps grants: guest frames from 4 GiB up, never RAM in its (empty) physical space.</summary>
    private const ulong MapWindow = 0x10_0000;
    private const int MapWindowFrames = 4096;

    /// <summary>Where each disk's grant-copy buffer sits in Dom0's physical space (8 GiB up), one page per indirect segment.</summary>
    private const ulong CopyWindow = 0x20_0000;
    private const int CopyBufferPages = 256;

    private readonly Machine _machine;
    private readonly EventChannelHostDomain _dom0;
    private readonly EptTables _dom0Ept;
    private readonly GrantDomain _dom0Grants;
    private readonly InProcessGrantMapper _mapper;
    private readonly XenStoreDaemon _daemon;
    private readonly XenStoreClient _toolstack;
    private readonly XenStoreClient _backendStore;
    private readonly IEventChannelClient _storeEvents;
    private readonly ConcurrentDictionary<uint, (XenStoreRingBinding Binding, GrantedStoreRing Ring)> _stores = new();
    private readonly List<(ConsoleBackend Backend, ConsoleOutputQueue Queue)> _consoles = [];
    private readonly List<(BlockBackend Backend, RawImageStorage Storage, IEventChannelClient Events, Dom0CopyBuffer Buffer)> _disks = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _tasks = [];

    public PvServices(Machine machine)
    {
        _machine = machine;
        _dom0 = new EventChannelHostDomain(machine.Events, Machine.BackendDomainId, isControlDomain: true);
        Activity = new PvActivity(() => _dom0.EventsInHand > 0, StoreRequestsUnread);
        _dom0Ept = new EptTables(machine.Memory, new FrameOwner(Machine.BackendDomainId));
        _dom0Grants = machine.Grants.CreateDomain(Machine.BackendDomainId, _dom0Ept);
        _mapper = new InProcessGrantMapper(machine.Grants, _dom0Grants, new GuestFrameNumber(MapWindow), MapWindowFrames);
        _daemon = new XenStoreDaemon();
        _toolstack = new XenStoreClient(_daemon.Connect(0));
        _backendStore = new XenStoreClient(_daemon.Connect(0));
        _toolstack.WriteAsync("/local/domain/0/name", "Domain-0").GetAwaiter().GetResult();
        _toolstack.WriteAsync("/local/domain/0/domid", "0").GetAwaiter().GetResult();
        _storeEvents = Observe(_dom0.Open());
        _tasks.Add(Task.Run(() => PumpStoreEventsAsync(_stop.Token)));
    }

    /// <summary>
    /// What the services are doing, for the scheduler: Dom0 holds work while an event it was sent is not yet served, and
    /// may have work while a guest's store ring has request bytes xenstored has not read.
    /// </summary>
    public PvActivity Activity { get; }

    /// <summary>The XenStore daemon (tests read the tree through it).</summary>
    public XenStoreDaemon Daemon => _daemon;

    private IEventChannelClient Observe(InProcessEventChannelClient c) => new ObservedEventChannelClient(c, Activity);

    /// <summary>
    /// The toolstack's part of building <paramref name="d"/>: seeds its reserved grants, connects the console backend to
    /// its console ring and xenstored to its store ring, and writes its XenStore tree. Returns 0 or a negated errno.
    /// </summary>
    public long AttachDomain(Domain d, ulong consolePfn, uint consolePort, ulong storePfn, uint storePort)
    {
        SeedReservedGrant(d, ConsoleBackend.ReservedConsoleGrant, consolePfn);
        SeedReservedGrant(d, ConsoleBackend.ReservedXenStoreGrant, storePfn);
        try
        {
            var queue = new ConsoleOutputQueue(d.Console);
            var console = new ConsoleBackend(Observe(_dom0.Open()), _mapper, queue);
            if (console.ConnectPrimary(d.Id, consolePort) != GrantStatus.Okay)
                return -(long)Hypercall.XenErrno.EFAULT;
            _consoles.Add((console, queue));
            _tasks.Add(Task.Run(() => console.RunAsync(_stop.Token)));

            if (_mapper.TryMap(d.Id, ConsoleBackend.ReservedXenStoreGrant, readOnly: false, out GrantMapping page) != GrantStatus.Okay)
                return -(long)Hypercall.XenErrno.EFAULT;
            uint port = _storeEvents.BindInterdomain(d.Id, storePort);
            var ring = new GrantedStoreRing(_mapper, page, _storeEvents, port, Activity);
            var binding = new XenStoreRingBinding(ring, ring);
            _stores[port] = (binding, ring);
            DomainStoreTree.WriteAsync(_toolstack, d, consolePfn, consolePort, storePfn, storePort).GetAwaiter().GetResult();
            _daemon.AttachDomain(d.Id, binding);
            return 0;
        }
        catch (EventChannelException e)
        {
            return -(long)e.Errno;
        }
    }

    /// <summary>
    /// Adds a disk to <paramref name="d"/> as xl's <c>disk=['format=raw,vdev=xvda,access=rw,target=PATH']</c>: the vbd
    /// device in XenStore and a block backend over the image, offering it (InitWait) before the guest runs.
    /// </summary>
    public void AddDisk(Domain d, string path, string vdev = "xvda", bool readOnly = false)
    {
        if (!XenbusPaths.TryParseVirtualDisk(vdev, out uint devid))
            throw new ArgumentException($"not a Xen virtual disk name: {vdev}", nameof(vdev));
        var storage = new RawImageStorage(path, readOnly);
        var (be, fe) = XenbusToolstack.AddDeviceAsync(_toolstack, Machine.BackendDomainId, d.Id, "vbd", devid,
            [new("params", path), new("type", "file"), new("mode", readOnly ? "r" : "w"), new("dev", vdev), new("device-type", "disk"),
             new("removable", "0"), new("bootable", "1")],
            [new("virtual-device", devid.ToString(System.Globalization.CultureInfo.InvariantCulture)), new("device-type", "disk")]).GetAwaiter().GetResult();
        var events = Observe(_dom0.Open());
        // Data moves by grant copy (GNTTABOP_copy) into pages of Dom0's own, as a Dom0 with a bounce buffer does.
        var buffer = new Dom0CopyBuffer(_machine.Memory, _dom0Ept, CopyWindow + (ulong)(_disks.Count * CopyBufferPages), CopyBufferPages);
        var backend = new BlockBackend(new XenbusBackendDevice(_backendStore, be, fe, d.Id), events, _mapper, storage,
            new BlockBackendOptions { MaxIndirectSegments = CopyBufferPages, CopyBuffer = buffer });
        var offered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        backend.StateChanged += s =>
        {
            Activity.Touch();
            if (s == XenbusState.InitWait)
                offered.TrySetResult();
        };
        _disks.Add((backend, storage, events, buffer));
        _tasks.Add(Task.Run(() => backend.RunAsync(_stop.Token)));
        if (!offered.Task.Wait(TimeSpan.FromSeconds(30)))
            throw new TimeoutException("the block backend did not reach InitWait");
    }

    private async Task PumpStoreEventsAsync(CancellationToken ct)
    {
        try
        {
            await foreach (uint port in _storeEvents.ReadPendingAsync(ct).ConfigureAwait(false))
            {
                if (_stores.TryGetValue(port, out var s))
                    s.Binding.Signal();
                Activity.Touch();
                try
                {
                    _storeEvents.Unmask(port);
                }
                catch (EventChannelException)
                {
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Whether a guest's store ring holds request bytes xenstored has not consumed (<c>req_cons != req_prod</c>).</summary>
    private bool StoreRequestsUnread()
    {
        foreach (var (_, ring) in _stores.Values)
        {
            if (ring.HasUnreadRequests)
                return true;
        }

        return false;
    }

    /// <summary>Moves console output to the domains' consoles; with <paramref name="force"/>, first drains every console ring.</summary>
    public void Poll(bool force = false)
    {
        foreach (var (backend, queue) in _consoles)
        {
            if (force)
                backend.Flush();
            queue.Drain();
        }
    }

    /// <summary>
    /// Every vCPU is blocked: lets the services finish what they are doing (see <see cref="PvActivity"/>); true at once
    /// when they notified a guest since the scheduler read <paramref name="seen"/> from <see cref="PvActivity.Answers"/>.
    /// </summary>
    public bool WaitForServices(long seen, bool hasDeadline) =>
        hasDeadline
            ? Activity.WaitForServices(seen, TimeSpan.FromMilliseconds(50), TimeSpan.FromSeconds(1))
            : Activity.WaitForServices(seen, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(10));

    /// <summary>The toolstack's <c>xc_dom_gnttab_seed</c>: grant entry <paramref name="gref"/> of <paramref name="d"/> gives Dom0 frame <paramref name="gfn"/>.</summary>
    private unsafe void SeedReservedGrant(Domain d, uint gref, ulong gfn)
    {
        var e = (GrantEntryV1*)(_machine.Memory.GetFramePointer(d.Grants.GetSharedFrame(0)) + (gref * GrantEntryV1.Size));
        e->Frame = checked((uint)gfn);
        e->DomId = Machine.BackendDomainId;
        Interlocked.MemoryBarrier();
        Volatile.Write(ref e->Flags, (ushort)GrantEntryFlags.PermitAccess);
    }

    /// <summary>Stops the services and releases every mapping, port and Dom0 itself (before the domains go).</summary>
    public void Dispose()
    {
        _stop.Cancel();
        try
        {
            Task.WaitAll([.. _tasks], TimeSpan.FromSeconds(10));
        }
        catch (AggregateException)
        {
            // Cancelled loops end with OperationCanceledException.
        }

        Poll(force: true);
        foreach (var (backend, _) in _consoles)
            backend.Dispose();
        foreach (var (backend, storage, events, _) in _disks)
        {
            backend.Dispose();
            storage.Dispose();
            events.Dispose();
        }

        _storeEvents.Dispose();
        _toolstack.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _backendStore.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _daemon.DisposeAsync().AsTask().GetAwaiter().GetResult();

        // Only once xenstored has stopped: until then it may still read a domain's store ring.
        foreach (var (_, ring) in _stores.Values)
            _mapper.Unmap(ring.Mapping);
        _dom0.Dispose();
        _machine.Grants.DestroyDomain(_dom0Grants);
        _dom0Ept.Dispose();
        foreach (var (_, _, _, buffer) in _disks)
            buffer.Free();
    }
}
