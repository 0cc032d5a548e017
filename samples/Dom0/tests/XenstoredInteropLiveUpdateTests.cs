using System.Diagnostics;
using VmmKit.TestSupport;
using VmmKit.XenStore.Client;

namespace VmmKit.Dom0.Tests;

/// <summary>
/// Live update between Xen's own C xenstored 4.17 (Debian's xen-utils-4.17, run under the fake-Xen LD_PRELOAD
/// shim of packages/XenStore/tests/XenOracle) and vmmkit-xenstored, through xenstored's migration stream
/// (xenstore_state.h) in <c>state_dump</c>.
/// </summary>
public class XenstoredInteropLiveUpdateTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Xen_xenstored_live_updates_to_vmmkit_xenstored_keeping_nodes_permissions_and_xenstore_watch()
    {
        var control = DebianTool.XenstoreControl();
        using var xen = await XenXenstored.StartAsync(DebianTool.Xenstored().Path, "-N", "-E", "500");
        Assert.EndsWith("/xenstored", xen.Image);
        var write = xen.Tool(RequiredTool.Require("xenstore-write", "xenstore-utils"),
            "/vm/1/name", "guest", "/vm/1/memory", "262144", "/local/domain/5/device/vbd/768/state", "4");
        Assert.True(write.ExitCode == 0, write.Stderr);
        var chmod = xen.Tool(RequiredTool.Require("xenstore-chmod", "xenstore-utils"), "/local/domain/5", "n5", "r0");
        Assert.True(chmod.ExitCode == 0, chmod.Stderr);
        await using var client = await XenStoreClient.ConnectAsync(xen.SocketPath);
        await client.SetPermissionsAsync("/vm/1", [new(0, XenStore.Store.XsAccess.None), new(5, XenStore.Store.XsAccess.Read)]);
        var (watcher, lines) = XenstoredProcess.StartWatch(xen.SocketPath, "/vm");
        try
        {
            Assert.Equal("/vm", await lines.ReadAsync().AsTask().WaitAsync(Wait));
            var before = await XenstoredLiveUpdateTests.SnapshotAsync(client);

            var lu = xen.Tool(control, "live-update", "-t", "20", XenstoredProcess.AppHost);
            Assert.True(lu.ExitCode == 0, $"xenstore-control exit {lu.ExitCode}: {lu.Stderr}{lu.Stdout}\n{xen.Log}");
            Assert.Equal(XenstoredProcess.AppHost, xen.Image);
            Assert.Equal(["-N", "-E", "500", "-U"], xen.CommandLine[1..]);
            Assert.False(File.Exists(Path.Combine(xen.RunDirectory, "state_dump")));

            // The same socket connection and a new one see the same nodes and permissions.
            Assert.Equal(before, await XenstoredLiveUpdateTests.SnapshotAsync(client));
            await using (var fresh = await XenStoreClient.ConnectAsync(xen.SocketPath))
                Assert.Equal(before, await XenstoredLiveUpdateTests.SnapshotAsync(fresh));
            // -E 500 from xenstored's argv is now our node quota.
            Assert.Equal(500, await client.GetQuotaAsync("nodes"));

            // xenstore-watch's watch came over with its connection.
            await client.WriteAsync("/vm/after", "x");
            Assert.Equal("/vm/after", await lines.ReadAsync().AsTask().WaitAsync(Wait));
            Assert.False(watcher.HasExited);
        }
        finally
        {
            watcher.Kill();
            watcher.Dispose();
        }
    }
}

/// <summary>
/// A daemon process started under the fake-Xen shim in a private directory (socket, run directory, the shim's
/// files): Xen's xenstored, or anything that may live-update into it.
/// </summary>
internal sealed class XenXenstored : IDisposable
{
    private readonly Process _process;
    private readonly StringWriter _log = new();

    private XenXenstored(string directory, Process process)
    {
        Directory = directory;
        _process = process;
    }

    public string Directory { get; }

    public string SocketPath => Path.Combine(Directory, "socket");

    public string RunDirectory => Path.Combine(Directory, "run");

    public string Image => new FileInfo($"/proc/{_process.Id}/exe").LinkTarget ?? "";

    public string[] CommandLine =>
        File.ReadAllText($"/proc/{_process.Id}/cmdline").Split('\0', StringSplitOptions.RemoveEmptyEntries);

    /// <summary>What the process printed so far.</summary>
    public string Log
    {
        get
        {
            lock (_log)
                return _log.ToString();
        }
    }

    /// <summary>Starts <paramref name="binary"/> with the shim's environment and waits until it answers.</summary>
    public static async Task<XenXenstored> StartAsync(string binary, params string[] args)
    {
        string shim = XenShim.Path;
        string dir = Path.Combine(Path.GetTempPath(), "vmmkit-xenlu-" + Guid.NewGuid().ToString("N")[..8]);
        System.IO.Directory.CreateDirectory(Path.Combine(dir, "run"));
        // Domain 5 exists for xenstored's permission checks (xc_domain_getinfo through the shim).
        File.WriteAllText(Path.Combine(dir, "domains"), "5");
        var psi = new ProcessStartInfo(binary)
        {
            UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = dir,
        };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        psi.Environment["LD_PRELOAD"] = shim;
        psi.Environment["FAKEXEN_DIR"] = dir;
        psi.Environment["XENSTORED_PATH"] = Path.Combine(dir, "socket");
        psi.Environment["XENSTORED_RUNDIR"] = Path.Combine(dir, "run");
        var d = new XenXenstored(dir, Process.Start(psi)!);
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

    private async Task WaitForSocketAsync()
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
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

    public (int ExitCode, string Stdout, string Stderr) Tool(DebianTool tool, params string[] args) =>
        XenstoredProcess.RunTool(SocketPath, tool.Path, args);

    public (int ExitCode, string Stdout, string Stderr) Tool(string path, params string[] args) =>
        XenstoredProcess.RunTool(SocketPath, path, args);

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

/// <summary>
/// The fake-Xen LD_PRELOAD shim (packages/XenStore/tests/XenOracle/fakexen.c and fakexen.map, linked into this
/// project's output), built with gcc once per test process as the XenStore tests build it.
/// </summary>
internal static class XenShim
{
    private static readonly Lazy<string> Shim = new(Build, LazyThreadSafetyMode.ExecutionAndPublication);

    public static string Path => Shim.Value;

    private static string Build()
    {
        string gcc = RequiredTool.Require("gcc", "gcc");
        RequiredTool.RequireFile("/usr/include/xenctrl.h", "libxen-dev");
        string src = System.IO.Path.Combine(AppContext.BaseDirectory, "XenOracle");
        string outDir = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"vmmkit-dom0-fakexen-{Environment.ProcessId}");
        System.IO.Directory.CreateDirectory(outDir);
        string so = System.IO.Path.Combine(outDir, "fakexen.so");
        var psi = new ProcessStartInfo(gcc) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in new[]
                 {
                     "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o", so, System.IO.Path.Combine(src, "fakexen.c"),
                     "-Wl,--version-script=" + System.IO.Path.Combine(src, "fakexen.map"), "-ldl",
                 })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEndAsync();
        if (!p.WaitForExit(60_000))
        {
            p.Kill();
            throw new TimeoutException("gcc did not finish building fakexen.so");
        }
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"gcc failed building fakexen.so: {err.Result}{output.Result}");
        return so;
    }
}
