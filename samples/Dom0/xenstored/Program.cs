// vmmkit-xenstored: a drop-in for Xen's xenstored on a Unix socket (XENSTORED_PATH), for Dom0 and for
// Debian's xenstore-* tools. SIGTERM and SIGINT stop it cleanly; `xenstore-control live-update <binary>`
// replaces it in place without dropping a client (see XenStoreDaemon.RunMainAsync).
using System.Runtime.InteropServices;
using VmmKit.XenStore.Daemon;

using var stop = new CancellationTokenSource();
void Stop(PosixSignalContext context)
{
    context.Cancel = true;
    stop.Cancel();
}
using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
// The library writes nothing to the console itself: usage goes to stdout, errors and the daemon's log
// (a line per message, as xenstored's stderr) to stderr.
return await XenStoreDaemon.RunMainAsync(args, Console.Out, Console.Error, logger: null, stop.Token);
