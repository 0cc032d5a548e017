using System.Collections.Concurrent;
using System.Globalization;
using VmmKit.Backends.Block;
using VmmKit.Backends.Xenbus;
using VmmKit.Dom0.Xen;
using VmmKit.XenStore.Client;
using VmmKit.XenStore.Daemon;

namespace VmmKit.Dom0.Daemon;

/// <summary>
/// Dom0's blkback: a VmmKit.Backends <see cref="BlockBackend"/> per disk of a domain, over a raw image, reaching the
/// guest only through <see cref="XenEvtchn"/> and <see cref="XenGnttab"/> (the data pages grant-mapped as domain 0).
/// The toolstack adds a disk's vbd trees as libxl does (<c>/local/domain/0/backend/vbd/N/DEV</c> and
/// <c>/local/domain/N/device/vbd/DEV</c>) and waits for the backend's InitWait before the guest runs.
/// </summary>
internal sealed class BlockBackends(Privcmd privcmd, XenGnttab grants, XenStoreDaemon xenstored) : IDisposable
{
    private sealed record Disk(BlockBackend Backend, RawImageStorage Storage, XenEvtchn Events, XenStoreClient Store, CancellationTokenSource Stop, Task Run);

    private readonly ConcurrentDictionary<ushort, List<Disk>> _byDomain = new();

    /// <summary>Adds <paramref name="disk"/> to <paramref name="domid"/> through the toolstack's <paramref name="toolstack"/> connection.</summary>
    public async Task AddAsync(XenStoreClient toolstack, ushort domid, DiskSpec disk)
    {
        if (!XenbusPaths.TryParseVirtualDisk(disk.Vdev, out uint devid))
            throw new FormatException($"not a Xen virtual disk name: {disk.Vdev}");
        var storage = new RawImageStorage(disk.Target, disk.ReadOnly);
        var (be, fe) = await XenbusToolstack.AddDeviceAsync(toolstack, 0, domid, "vbd", devid,
            [new("params", disk.Target), new("type", "file"), new("mode", disk.ReadOnly ? "r" : "w"), new("dev", disk.Vdev),
             new("device-type", "disk"), new("removable", "0"), new("bootable", "1")],
            [new("virtual-device", devid.ToString(CultureInfo.InvariantCulture)), new("device-type", "disk")]);
        var offered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var run = Start(domid, be, fe, storage, s =>
        {
            if (s == XenbusState.InitWait)
                offered.TrySetResult();
        });
        if (await Task.WhenAny(offered.Task, run, Task.Delay(TimeSpan.FromSeconds(30))) != offered.Task)
            throw new TimeoutException($"the block backend of {disk.Vdev} did not reach InitWait");
    }

    private Task Start(ushort domid, string backendPath, string frontendPath, RawImageStorage storage, Action<XenbusState>? stateChanged)
    {
        var events = new XenEvtchn(privcmd);
        var store = new XenStoreClient(xenstored.Connect(0));
        var backend = new BlockBackend(new XenbusBackendDevice(store, backendPath, frontendPath, domid), events, grants, storage,
            new BlockBackendOptions { MaxIndirectSegments = 32 });
        if (stateChanged is not null)
            backend.StateChanged += stateChanged;
        var stop = new CancellationTokenSource();
        var run = Task.Run(() => backend.RunAsync(stop.Token));
        _byDomain.GetOrAdd(domid, _ => []).Add(new Disk(backend, storage, events, store, stop, run));
        return run;
    }

    /// <summary>
    /// A new Dom0 after the previous one died: every vbd of <paramref name="domid"/> in the backend tree the toolstack
    /// wrote (<c>/local/domain/0/backend/vbd/DOMID/DEV</c>: <c>params</c>, <c>mode</c>, <c>frontend</c>) gets a block
    /// backend again. A device left Connected is taken over in that state: the ring is mapped and its port bound again
    /// (the old process's grant maps and ports went with it), and the requests the frontend queued meanwhile, or that the
    /// old backend took without answering, are served from the ring's last response on. Returns the disks found.
    /// </summary>
    public async Task<int> ReattachAsync(XenStoreClient toolstack, ushort domid)
    {
        string root = $"/local/domain/0/backend/vbd/{domid}";
        IReadOnlyList<string> devices;
        try
        {
            devices = await toolstack.DirectoryAsync(root);
        }
        catch (XenStoreException)
        {
            return 0;   // no disks
        }

        int found = 0;
        foreach (string dev in devices)
        {
            string be = $"{root}/{dev}";
            if (await toolstack.TryReadStringAsync($"{be}/params") is not { } target
                || await toolstack.TryReadStringAsync($"{be}/frontend") is not { } fe)
                continue;
            bool readOnly = await toolstack.TryReadStringAsync($"{be}/mode") == "r";
            RawImageStorage storage;
            try
            {
                storage = new RawImageStorage(target, readOnly);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"vmmkit-dom0: {be}: cannot open {target} again ({e.Message}); the disk stays without a backend");
                continue;
            }

            _ = Start(domid, be, fe, storage, null);
            found++;
        }

        return found;
    }

    /// <summary>Stops a domain's backends (it is being destroyed): rings unmapped, ports unbound, images closed.</summary>
    public void Remove(ushort domid)
    {
        if (!_byDomain.TryRemove(domid, out var disks))
            return;
        foreach (var d in disks)
        {
            d.Stop.Cancel();
            try
            {
                d.Run.Wait(TimeSpan.FromSeconds(5));
            }
            catch (AggregateException)
            {
                // Cancelled.
            }

            d.Backend.Dispose();
            d.Storage.Dispose();
            d.Events.Dispose();
            d.Store.DisposeAsync().AsTask().GetAwaiter().GetResult();
            d.Stop.Dispose();
        }
    }

    /// <summary>Stops every backend.</summary>
    public void Dispose()
    {
        foreach (ushort domid in _byDomain.Keys)
            Remove(domid);
    }
}
