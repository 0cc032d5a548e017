using System.Diagnostics;
using System.Threading.Channels;
using VmmKit.TestSupport;
using VmmKit.XenStore.Client;

namespace VmmKit.Dom0.Tests;

/// <summary>
/// A XenStore daemon process on a private socket and run directory, plus Debian's tools pointed at it:
/// vmmkit-xenstored started through <c>dotnet vmmkit-xenstored.dll</c> (so the process image is the dotnet host
/// until a live update replaces it), or any binary started under the fake-Xen shim (Xen's own xenstored).
/// </summary>
internal sealed class XenstoredProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringWriter _log = new();

    private XenstoredProcess(string directory, Process process)
    {
        Directory = directory;
        _process = process;
    }

    public string Directory { get; }

    public string SocketPath => Path.Combine(Directory, "socket");

    public string RunDirectory => Path.Combine(Directory, "run");

    public int Pid => _process.Id;

    /// <summary>The built daemon's native launcher (apphost), a binary <c>xenstore-control</c> can name.</summary>
    public static string AppHost => Path.Combine(AppContext.BaseDirectory, "vmmkit-xenstored");

    /// <summary>What the process runs now (<c>/proc/&lt;pid&gt;/exe</c>).</summary>
    public string Image => new FileInfo($"/proc/{Pid}/exe").LinkTarget ?? "";

    /// <summary>Its argv now.</summary>
    public string[] CommandLine =>
        File.ReadAllText($"/proc/{Pid}/cmdline").Split('\0', StringSplitOptions.RemoveEmptyEntries);

    public bool HasExited => _process.HasExited;

    /// <summary>What the process printed so far.</summary>
    public string Log
    {
        get
        {
            lock (_log)
                return _log.ToString();
        }
    }

    /// <summary>Starts vmmkit-xenstored (JIT, through dotnet) with <paramref name="extraArgs"/>.</summary>
    public static Task<XenstoredProcess> StartAsync(params string[] extraArgs)
    {
        string dir = NewDirectory();
        var psi = new ProcessStartInfo("dotnet");
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "vmmkit-xenstored.dll"));
        psi.ArgumentList.Add(Path.Combine(dir, "socket"));
        psi.ArgumentList.Add("--rundir");
        psi.ArgumentList.Add(Path.Combine(dir, "run"));
        foreach (var a in extraArgs)
            psi.ArgumentList.Add(a);
        return LaunchAsync(dir, psi);
    }

    /// <summary>
    /// Starts <paramref name="binary"/> (Xen's xenstored, or anything that may live-update into it) under the
    /// fake-Xen LD_PRELOAD shim, with the socket and run directory given through XENSTORED_PATH/RUNDIR.
    /// Domain 5 exists for xenstored's permission checks (xc_domain_getinfo through the shim).
    /// </summary>
    public static Task<XenstoredProcess> StartUnderFakeXenAsync(string binary, params string[] args)
    {
        string dir = NewDirectory();
        var psi = VmmKit.XenStore.Tests.XenOracle.FakeXen.StartInfo(binary, dir, args);
        File.WriteAllText(Path.Combine(dir, "domains"), "5");
        return LaunchAsync(dir, psi);
    }

    private static string NewDirectory()
    {
        string dir = Path.Combine(Path.GetTempPath(), "vmmkit-xsd-" + Guid.NewGuid().ToString("N")[..8]);
        System.IO.Directory.CreateDirectory(Path.Combine(dir, "run"));
        return dir;
    }

    private static async Task<XenstoredProcess> LaunchAsync(string dir, ProcessStartInfo psi)
    {
        psi.UseShellExecute = false;
        psi.RedirectStandardOutput = true;
        psi.RedirectStandardError = true;
        var d = new XenstoredProcess(dir, Process.Start(psi)!);
        d._process.OutputDataReceived += (_, e) => d.Append(e.Data);
        d._process.ErrorDataReceived += (_, e) => d.Append(e.Data);
        d._process.BeginOutputReadLine();
        d._process.BeginErrorReadLine();
        try
        {
            await d.WaitForSocketAsync();
        }
        catch
        {
            d.Dispose();
            throw;
        }
        return d;
    }

    private void Append(string? line)
    {
        if (line is null)
            return;
        lock (_log)
            _log.WriteLine(line);
    }

    public async Task WaitForSocketAsync()
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (DateTime.UtcNow < deadline && !_process.HasExited)
        {
            if (File.Exists(SocketPath))
            {
                try
                {
                    await using var c = await XenStoreClient.ConnectAsync(SocketPath);
                    await c.DirectoryAsync("/").WaitAsync(TimeSpan.FromSeconds(5));
                    return;
                }
                catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or TimeoutException)
                {
                }
            }
            await Task.Delay(50);
        }
        throw new InvalidOperationException($"{_process.StartInfo.FileName} did not come up (exited: {_process.HasExited}): {Log}");
    }

    public Task<XenStoreClient> ConnectAsync() => XenStoreClient.ConnectAsync(SocketPath);

    /// <summary>Runs a Debian tool against the daemon.</summary>
    public (int ExitCode, string Stdout, string Stderr) Tool(string path, params string[] args) => RunTool(SocketPath, path, args);

    /// <summary>Runs a Debian tool against the daemon listening on <paramref name="socketPath"/>.</summary>
    public static (int ExitCode, string Stdout, string Stderr) RunTool(string socketPath, string path, params string[] args)
    {
        var psi = new ProcessStartInfo(path) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        psi.Environment["XENSTORED_PATH"] = socketPath;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(120_000))
        {
            p.Kill();
            throw new TimeoutException($"{path} {string.Join(' ', args)} did not finish");
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    public (int ExitCode, string Stdout, string Stderr) Tool(DebianTool tool, params string[] args) => Tool(tool.Path, args);

    /// <summary>Starts <c>xenstore-watch</c> (Debian) on <paramref name="path"/>; its lines arrive in the channel.</summary>
    public (Process Process, ChannelReader<string> Lines) StartWatch(string path) => StartWatch(SocketPath, path);

    /// <summary>Starts <c>xenstore-watch</c> (Debian) on <paramref name="path"/> against <paramref name="socketPath"/>.</summary>
    public static (Process Process, ChannelReader<string> Lines) StartWatch(string socketPath, string path)
    {
        var psi = new ProcessStartInfo(RequiredTool.Require("xenstore-watch", "xenstore-utils"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(path);
        psi.Environment["XENSTORED_PATH"] = socketPath;
        var p = Process.Start(psi)!;
        var lines = Channel.CreateUnbounded<string>();
        _ = Task.Run(async () =>
        {
            while (await p.StandardOutput.ReadLineAsync() is { } line)
                await lines.Writer.WriteAsync(line);
            lines.Writer.TryComplete();
        });
        return (p, lines.Reader);
    }

    /// <summary>Sends SIGTERM and waits for the exit code.</summary>
    public async Task<int> TerminateAsync()
    {
        _ = Kill(Pid, 15);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await _process.WaitForExitAsync(cts.Token);
        return _process.ExitCode;
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill")]
    private static extern int Kill(int pid, int signal);

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
                _process.Kill(entireProcessTree: true);
            _process.WaitForExit(10_000);
        }
        catch (InvalidOperationException)
        {
        }
        _process.Dispose();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>A Debian binary the tests run.</summary>
internal sealed record DebianTool(string Path)
{
    /// <summary><c>xenstore-control</c> from Debian's xen-utils-4.17 (see <see cref="XenUtils"/>).</summary>
    public static DebianTool XenstoreControl() => new(XenUtils.Require("xenstore-control"));

    /// <summary>Xen's own C xenstored 4.17 from the same package.</summary>
    public static DebianTool Xenstored() => new(XenUtils.Require("xenstored"));
}
