using System.Diagnostics;
using System.Threading.Channels;
using VmmKit.TestSupport;
using VmmKit.XenStore.Client;

namespace VmmKit.Dom0.Tests;

/// <summary>
/// A real <c>vmmkit-xenstored</c> process on a private socket and run directory, plus Debian's tools
/// pointed at it. Started through <c>dotnet vmmkit-xenstored.dll</c>, so the process image is the dotnet
/// host until a live update replaces it with another binary.
/// </summary>
internal sealed class XenstoredProcess : IDisposable
{
    private readonly Process _process;

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

    public static async Task<XenstoredProcess> StartAsync(params string[] extraArgs)
    {
        string dir = Path.Combine(Path.GetTempPath(), "vmmkit-xsd-" + Guid.NewGuid().ToString("N")[..8]);
        System.IO.Directory.CreateDirectory(dir);
        var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardError = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "vmmkit-xenstored.dll"));
        psi.ArgumentList.Add(Path.Combine(dir, "socket"));
        psi.ArgumentList.Add("--rundir");
        psi.ArgumentList.Add(Path.Combine(dir, "run"));
        foreach (var a in extraArgs)
            psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        var d = new XenstoredProcess(dir, p);
        await d.WaitForSocketAsync();
        return d;
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
                    await c.DirectoryAsync("/");
                    return;
                }
                catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
                {
                }
            }
            await Task.Delay(50);
        }
        throw new InvalidOperationException($"vmmkit-xenstored did not come up (exited: {_process.HasExited})");
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
    /// <summary>
    /// <c>xenstore-control</c> from Debian's xen-utils-4.17: installed under /usr/lib/xen-4.17/bin, or unpacked
    /// by ./test.sh into artifacts/debian/xen-utils (installing the package would pull in systemd and Xen's
    /// init scripts). Missing = failure, never a skip.
    /// </summary>
    public static DebianTool XenstoreControl() => XenUtil("xenstore-control");

    /// <summary>Xen's own C xenstored 4.17 from the same package, found the same way.</summary>
    public static DebianTool Xenstored() => XenUtil("xenstored");

    private static DebianTool XenUtil(string name)
    {
        string relative = "usr/lib/xen-4.17/bin/" + name;
        var candidates = new List<string> { "/" + relative };
        if (Environment.GetEnvironmentVariable("VMMKIT_XEN_UTILS_ROOT") is { Length: > 0 } root)
            candidates.Add(System.IO.Path.Combine(root, relative));
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            candidates.Add(System.IO.Path.Combine(dir.FullName, "artifacts/debian/xen-utils", relative));
        foreach (var c in candidates)
        {
            if (File.Exists(c))
                return new DebianTool(c);
        }
        throw new InvalidOperationException(
            $"{name} (Debian xen-utils-4.17) is missing; ./test.sh unpacks it into artifacts/debian/xen-utils.");
    }
}
