using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Sockets;
using VmmKit.XenStore.Transports;

namespace VmmKit.XenStore.Tests.XenOracle;

/// <summary>
/// Xen's own xenstored 4.17 (Debian xen-utils-4.17) running as a child process under the fake-Xen
/// LD_PRELOAD shim, in a private directory: socket, run directory, the shim's FIFOs and ring files.
/// Guests' rings are the shim's <c>ring-&lt;domid&gt;</c> files, mapped here too; the guest kicks xenstored
/// by writing a port to <c>evtchn-in</c>, and xenstored's notifications arrive on <c>evtchn-out</c>.
/// </summary>
internal sealed class XenstoredOracle : IXsSide
{
    private readonly Process _process;
    private readonly ConcurrentDictionary<uint, (MappedRingPage Page, XenStoreRingStream? Stream)> _domains = new();
    private readonly HashSet<uint> _alive = [];
    private readonly object _kickGate = new();
    private readonly Thread _notifications;
    private readonly StringWriter _log = new();
    private FileStream? _evtchnIn;

    private XenstoredOracle(string directory, Process process)
    {
        Directory = directory;
        _process = process;
        _notifications = new Thread(ReadNotifications) { IsBackground = true, Name = "xenstored notifications" };
    }

    public string Name => "xenstored";

    public string Directory { get; }

    public string SocketPath => Path.Combine(Directory, "socket");

    /// <summary>What xenstored printed so far (stdout and stderr).</summary>
    public string Log
    {
        get
        {
            lock (_log)
                return _log.ToString();
        }
    }

    /// <summary>Starts xenstored with extra arguments (quota options) and waits until it answers on its socket.</summary>
    public static async Task<XenstoredOracle> StartAsync(params string[] args)
    {
        string dir = Path.Combine(Path.GetTempPath(), "vmmkit-xenoracle-" + Guid.NewGuid().ToString("N")[..10]);
        // -N: no fork. Not -D: domain_init and dom0_init must run (they set up the tree and the event fd).
        var psi = FakeXen.StartInfo(FakeXen.Xenstored(), dir, ["-N", .. args]);
        File.WriteAllText(Path.Combine(dir, "domains"), "");
        var process = Process.Start(psi)!;
        var oracle = new XenstoredOracle(dir, process);
        process.OutputDataReceived += (_, e) => oracle.Append(e.Data);
        process.ErrorDataReceived += (_, e) => oracle.Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            await oracle.WaitUntilServingAsync();
        }
        catch
        {
            await oracle.DisposeAsync();
            throw;
        }
        return oracle;
    }

    private void Append(string? line)
    {
        if (line is null)
            return;
        lock (_log)
            _log.WriteLine(line);
    }

    private async Task WaitUntilServingAsync()
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            if (_process.HasExited)
                throw new InvalidOperationException($"xenstored exited with {_process.ExitCode}: {Log}");
            if (File.Exists(SocketPath))
            {
                try
                {
                    // One answered request proves the main loop runs, so domain_init made the shim's FIFOs.
                    using var probe = await ConnectSocketAsync();
                    var r = await probe.RoundTripAsync(Wire.XsMessageType.Directory, 1, 0, RawConnection.Strings("/"));
                    if (r.Header.Type == Wire.XsMessageType.Directory)
                        break;
                }
                catch (Exception e) when (e is IOException or SocketException or OperationCanceledException)
                {
                }
            }
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"xenstored did not come up: {Log}");
            await Task.Delay(20);
        }
        _evtchnIn = new FileStream(Path.Combine(Directory, "evtchn-in"), FileMode.Open, FileAccess.Write, FileShare.ReadWrite, 0);
        _notifications.Start();
    }

    /// <summary>Waits (up to 30 s) for xenstored to exit by itself, its output read to the end; false if it is still running.</summary>
    public async Task<bool> WaitForExitAsync()
    {
        try
        {
            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
            return true;
        }
        catch (TimeoutException)
        {
            return false;
        }
    }

    public async Task<RawConnection> ConnectSocketAsync()
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await s.ConnectAsync(new UnixDomainSocketEndPoint(SocketPath));
        }
        catch
        {
            s.Dispose();
            throw;
        }
        return new RawConnection(new NetworkStream(s, ownsSocket: true));
    }

    public void PrepareDomain(uint domid)
    {
        _domains.GetOrAdd(domid, d => (new MappedRingPage(Path.Combine(Directory, $"ring-{d}")), null));
        SetAlive(domid, true);
    }

    /// <summary>Declares a domain alive or gone for xc_domain_getinfo (the shim re-reads the file).</summary>
    public void SetAlive(uint domid, bool alive)
    {
        lock (_alive)
        {
            if (alive)
                _alive.Add(domid);
            else
                _alive.Remove(domid);
            string tmp = Path.Combine(Directory, "domains.tmp");
            File.WriteAllText(tmp, string.Join('\n', _alive));
            File.Move(tmp, Path.Combine(Directory, "domains"), true);
        }
    }

    /// <summary>Fires VIRQ_DOM_EXC: xenstored re-checks every domain (domain.c check_domains).</summary>
    public void KickDomainException() => Kick(uint.Parse(File.ReadAllText(Path.Combine(Directory, "virq-port")).Trim()));

    public RawConnection OpenGuest(uint domid)
    {
        var (page, _) = _domains[domid];
        string portFile = Path.Combine(Directory, $"port-{domid}");
        uint port = uint.Parse(File.ReadAllText(portFile).Trim());
        var stream = new XenStoreRingStream(page, new PortKick(this, port), XenStoreRingRole.Client);
        _domains[domid] = (page, stream);
        return new RawConnection(stream);
    }

    private sealed class PortKick(XenstoredOracle owner, uint port) : IXenStoreEventNotifier
    {
        public void Notify() => owner.Kick(port);
    }

    private void Kick(uint port)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, port);
        lock (_kickGate)
        {
            _evtchnIn!.Write(b);
            _evtchnIn.Flush();
        }
    }

    /// <summary>Every xenevtchn_notify wakes all guest streams (a spurious wake-up only re-reads the indexes).</summary>
    private void ReadNotifications()
    {
        try
        {
            using var f = new FileStream(Path.Combine(Directory, "evtchn-out"), FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 0);
            var b = new byte[256];
            while (f.Read(b) > 0)
            {
                foreach (var (_, (_, stream)) in _domains)
                    stream?.Signal();
            }
        }
        catch (IOException)
        {
        }
        catch (ObjectDisposedException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
                _process.Kill();
            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        }
        catch (InvalidOperationException)
        {
        }
        _notifications.Join(TimeSpan.FromSeconds(5));
        _evtchnIn?.Dispose();
        foreach (var (_, (page, stream)) in _domains)
        {
            stream?.Dispose();
            page.Dispose();
        }
        _process.Dispose();
        try
        {
            System.IO.Directory.Delete(Directory, true);
        }
        catch (IOException)
        {
        }
    }
}
