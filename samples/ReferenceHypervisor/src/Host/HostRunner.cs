using System.Diagnostics;
using System.Runtime.InteropServices;
using VmmKit.Ept;
using VmmKit.ReferenceHypervisor.Cli;

namespace VmmKit.ReferenceHypervisor.Host;

/// <summary>
/// <c>vmmkit-hv host</c>: the hypervisor with no guest, domain 0 created, and the Dom0 channel listening at
/// <c>RUNDIR/hypervisor.sock</c>; with <c>--dom0 PATH</c> it also starts the Dom0 process (<c>PATH --rundir RUNDIR</c>),
/// so one command brings a host up, as booting a Xen machine does. Runs until SIGTERM or SIGINT.
/// </summary>
internal static class HostRunner
{
    /// <summary>The socket's name in the run directory.</summary>
    public const string SocketName = "hypervisor.sock";

    /// <summary>Runs the host; returns the process exit status.</summary>
    public static int Run(string rundir, ulong machineMiB, ulong dom0MiB, string? dom0Path)
    {
        if (machineMiB is < 16 or > 65536 || dom0MiB == 0 || dom0MiB >= machineMiB)
        {
            Console.Error.WriteLine("vmmkit-hv: --memory must be 16..65536 MiB and larger than --dom0-memory");
            return ExitCodes.StartFailure;
        }

        Directory.CreateDirectory(rundir);
        using var machine = new Machine(machineMiB << 20, ProcessorProviders.CreateDefault(), MachineMemoryBacking.SharedFile, inProcessBackend: false)
        {
            Logger = message => Console.Error.WriteLine($"(XEN) {message}"),
        };
        var dom0 = new ControlDomain(machine, (dom0MiB << 20) >> Page.PageShift);
        using var channel = new Dom0Channel(machine, dom0, Path.Combine(rundir, SocketName));
        machine.Host = channel;
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; channel.Stop(); });
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; channel.Stop(); });
        Console.Error.WriteLine($"(XEN) host up: {machineMiB} MiB, domain 0 with {dom0MiB} MiB; Dom0 channel at {channel.SocketPath}");

        Process? dom0Process = null;
        if (dom0Path is not null)
        {
            var start = new ProcessStartInfo(dom0Path) { UseShellExecute = false };
            start.ArgumentList.Add("--rundir");
            start.ArgumentList.Add(rundir);
            dom0Process = Process.Start(start);
        }

        machine.Run();
        if (dom0Process is { HasExited: false })
        {
            dom0Process.Kill();
            dom0Process.WaitForExit();
        }

        return 0;
    }
}
