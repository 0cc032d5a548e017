using System.Diagnostics;
using VmmKit.Dom0.Xen;

namespace VmmKit.Dom0.Tests;

/// <summary><c>vmmkit-hv host</c> as a real process on a private run directory; killed on dispose.</summary>
internal sealed class HostProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringWriter _log = new();

    private HostProcess(string rundir, Process process)
    {
        RunDirectory = rundir;
        _process = process;
    }

    public string RunDirectory { get; }

    public string SocketPath => Path.Combine(RunDirectory, "hypervisor.sock");

    public bool HasExited => _process.HasExited;

    /// <summary>What the hypervisor printed (its "(XEN)" messages).</summary>
    public string Log
    {
        get
        {
            lock (_log)
                return _log.ToString();
        }
    }

    /// <summary>Starts the hypervisor (and, with <paramref name="dom0"/>, the Dom0 process) and waits for its socket.</summary>
    public static HostProcess Start(int memoryMiB = 128, string? dom0 = null, string? rundir = null)
    {
        rundir ??= Directory.CreateTempSubdirectory("vmmkit-host-").FullName;
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "vmmkit-hv.dll"));
        foreach (var a in new[] { "host", "--rundir", rundir, "--memory", memoryMiB.ToString(System.Globalization.CultureInfo.InvariantCulture) })
            psi.ArgumentList.Add(a);
        if (dom0 is not null)
        {
            psi.ArgumentList.Add("--dom0");
            psi.ArgumentList.Add(dom0);
        }

        var host = new HostProcess(rundir, Process.Start(psi)!);
        host._process.ErrorDataReceived += (_, e) => host.Append(e.Data);
        host._process.OutputDataReceived += (_, e) => host.Append(e.Data);
        host._process.BeginErrorReadLine();
        host._process.BeginOutputReadLine();
        var clock = Stopwatch.StartNew();
        while (!File.Exists(host.SocketPath))
        {
            if (host._process.HasExited || clock.Elapsed > TimeSpan.FromSeconds(60))
                throw new InvalidOperationException($"vmmkit-hv host did not come up:\n{host.Log}");
            Thread.Sleep(20);
        }

        return host;
    }

    private void Append(string? line)
    {
        if (line is null)
            return;
        lock (_log)
            _log.WriteLine(line);
    }

    /// <summary>Connects a Dom0 client.</summary>
    public HypervisorChannel Connect() => HypervisorChannel.Connect(SocketPath);

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }

        _process.Dispose();
        try
        {
            Directory.Delete(RunDirectory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
