using VmmKit.Dom0.Daemon;
using VmmKit.Dom0.Xen;
using VmmKit.EventChannel;
using VmmKit.XenStore.Client;
using VmmKit.XenStore.Daemon;

// vmmkit-dom0: the control domain's process. Attaches to the hypervisor as domain 0 (RUNDIR/hypervisor.sock) and runs
// xenstored (RUNDIR/xenstored.sock, for Debian's xenstore-* with XENSTORED_PATH), the toolstack, the console backend
// and the control socket for vmmkit-xl (RUNDIR/dom0.sock). A new vmmkit-dom0 reattaches to running domains.
if (args.Length != 2 || args[0] != "--rundir")
{
    Console.Error.WriteLine("usage: vmmkit-dom0 --rundir DIR   (DIR holds the hypervisor's hypervisor.sock)");
    return 2;
}

string rundir = Path.GetFullPath(args[1]);
string hvSocket = Path.Combine(rundir, "hypervisor.sock");
var deadline = DateTime.UtcNow.AddSeconds(60);
while (!File.Exists(hvSocket) && DateTime.UtcNow < deadline)
    Thread.Sleep(50);

using var channel = HypervisorChannel.Connect(hvSocket);
using var stop = new CancellationTokenSource();
channel.Disconnected += stop.Cancel;
using var term = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
using var interrupt = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });

var privcmd = new Privcmd(channel);
var xc = new XenControl(privcmd);

// xenstored: its state is saved after every toolstack change, so that a Dom0 started after this one dies finds the tree.
string statePath = Path.Combine(rundir, "xenstored.state");
// xenstored maps each domain's store ring when the toolstack introduces it (XS_INTRODUCE).
using var storeEvents = new XenEvtchn(privcmd);
using var storeRings = new StoreRings(privcmd, storeEvents);
await using var xenstored = new XenStoreDaemon(new XenStoreDaemonOptions { DomainConnector = storeRings });
bool reattach = xc.ListDomains().Any(d => d.Domid != 0) && File.Exists(statePath);
if (reattach)
    xenstored.RestoreState(File.ReadAllBytes(statePath));
var xenstoredTask = xenstored.RunAsync(Path.Combine(rundir, "xenstored.sock"), stop.Token);
await using var store = new XenStoreClient(xenstored.Connect(0));
if (!reattach)
{
    await store.WriteAsync("/local/domain/0/name", "Domain-0");
    await store.WriteAsync("/local/domain/0/domid", "0");
}

var saver = new StateSaver(xenstored.SaveState, statePath, TimeProvider.System);
void SaveState() => saver.Save();

// One gntdev handle for every backend: it hands out Dom0's grant-mapping slots.
var gnttab = new XenGnttab(privcmd);
using var disks = new BlockBackends(privcmd, gnttab, xenstored);
using var consoles = new ConsoleBackends(privcmd, gnttab, Path.Combine(rundir, "console"));
var toolstack = new Toolstack(xc, store, consoles, storeRings, disks, SaveState);
if (reattach)
{
    await toolstack.ReattachAsync(xenstored);
    foreach (var d in xc.ListDomains())
    {
        if (d.Domid != 0)
            await disks.ReattachAsync(store, d.Domid);
    }
}

SaveState();

// Like xenstored's database file (its tdb), the state on disk follows every change, whoever makes it: a guest's own
// writes (a frontend's ring-ref, event-channel and state) are what a Dom0 started after this one dies needs to find.
// Those are saved at a bounded rate (StateSaver), so a guest writing without pause cannot keep Dom0 saving.
await using var persist = new XenStoreClient(xenstored.Connect(0));
var changed = new SemaphoreSlim(0);
_ = Task.Run(async () =>
{
    try
    {
        await foreach (var _ in persist.WatchAsync("/", "vmmkit-dom0-persist", stop.Token))
            changed.Release();
    }
    catch (Exception e) when (e is OperationCanceledException or XenStoreException)
    {
    }
});
_ = Task.Run(async () =>
{
    try
    {
        await saver.RunAsync(changed, stop.Token);
    }
    catch (OperationCanceledException)
    {
    }
});

using var domExcEvents = new XenEvtchn(privcmd);
uint domExc = domExcEvents.BindVirq(Virq.DomExc);   // the previous process's binding was closed with it
_ = Task.Run(async () =>
{
    await foreach (uint _ in domExcEvents.ReadPendingAsync(stop.Token))
    {
        await toolstack.OnDomainExceptionAsync();
        domExcEvents.Unmask(domExc);
    }
});

var control = new ControlServer(toolstack, xc, consoles, Path.Combine(rundir, "dom0.sock"));
Console.Error.WriteLine($"vmmkit-dom0: attached as domain 0 ({channel.Dom0Pages >> 8} MiB){(reattach ? ", reattached to the running domains" : "")}; control at {Path.Combine(rundir, "dom0.sock")}");
try
{
    await control.RunAsync(stop.Token);
}
catch (OperationCanceledException)
{
}

SaveState();
try
{
    await xenstoredTask;
}
catch (OperationCanceledException)
{
}

return 0;
