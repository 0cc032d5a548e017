using System.Text;
using VmmKit.XenStore.Store;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Tests.XenOracle;

/// <summary>
/// Sends the same raw frames to Xen's xenstored and to our daemon over equivalent connections and compares
/// every reply (type, req_id, tx_id, payload) and, after every step, the watch events each connection
/// received. The first divergence fails with the whole request history, so it can be replayed.
/// </summary>
internal sealed class XsDifferential : IAsyncDisposable
{
    /// <summary>Quotas both daemons run with: small enough that tests reach them over a socket and rings.</summary>
    public static readonly (string Option, string Value, Action<XenStoreQuotas> Apply)[] QuotaOptions =
    [
        ("-E", "30", q => q.Nodes = 30),
        ("-S", "300", q => q.NodeSize = 300),
        ("-W", "5", q => q.Watches = 5),
        ("-t", "3", q => q.Transactions = 3),
        ("-A", "4", q => q.Permissions = 4),
        ("-Q", "transaction-nodes=20", q => q.TransactionNodes = 20),
    ];

    private const int DefaultTimeout = 30_000;

    /// <summary>How long a reply or event may take (a large commit takes xenstored a while).</summary>
    public int Timeout { get; set; } = DefaultTimeout;
    private readonly Dictionary<string, Pair> _connections = [];
    private readonly List<string> _history = [];
    private readonly Dictionary<uint, string> _guests = [];
    private uint _nextReqId = 1;

    private XsDifferential(XenstoredOracle xen, OurDaemonSide ours)
    {
        Xen = xen;
        Ours = ours;
    }

    public XenstoredOracle Xen { get; }

    public OurDaemonSide Ours { get; }

    /// <summary>Outcomes as "TYPE req tx payload" lines for xenstored and ours, for the last step.</summary>
    public (string Xen, string Ours) Last { get; private set; }

    public static async Task<XsDifferential> StartAsync()
    {
        var quotas = new XenStoreQuotas();
        var args = new List<string>();
        foreach (var (option, value, apply) in QuotaOptions)
        {
            args.Add(option);
            args.Add(value);
            apply(quotas);
        }
        var xen = await XenstoredOracle.StartAsync([.. args]);
        var ours = new OurDaemonSide(quotas);
        ours.Start();
        var d = new XsDifferential(xen, ours);
        await d.AddSocketAsync("dom0");
        return d;
    }

    private sealed class Pair(RawConnection xen, RawConnection ours)
    {
        public RawConnection Xen { get; } = xen;
        public RawConnection Ours { get; } = ours;
        public List<string> XenEvents { get; } = [];
        public List<string> OursEvents { get; } = [];
        public bool Closed { get; set; }
    }

    public IReadOnlyCollection<string> ConnectionNames => _connections.Keys;

    public bool IsOpen(string name) => _connections.TryGetValue(name, out var p) && !p.Closed;

    public async Task AddSocketAsync(string name)
    {
        _history.Add($"connect {name} (socket)");
        _connections[name] = new Pair(await Xen.ConnectSocketAsync(), await Ours.ConnectSocketAsync());
    }

    /// <summary>
    /// The domain comes into existence (the hypervisor's view: xc_domain_getinfo finds it), as it does before
    /// a toolstack writes its nodes and permissions. Our daemon has no hypervisor to ask (README Known gaps).
    /// </summary>
    public void CreateDomain(uint domid)
    {
        _history.Add($"domain {domid} exists");
        Xen.PrepareDomain(domid);
        Ours.PrepareDomain(domid);
    }

    /// <summary>The toolstack connection introduces <paramref name="domid"/>; on success <paramref name="name"/> is its guest.</summary>
    public async Task<string> IntroduceAsync(string toolstack, string name, uint domid, string payloadOverride = "")
    {
        Xen.PrepareDomain(domid);
        Ours.PrepareDomain(domid);
        string reply = await SendAsync(toolstack, XsMessageType.Introduce,
            payloadOverride.Length > 0 ? Encoding.ASCII.GetBytes(payloadOverride) : RawConnection.Strings(domid.ToString(), "4096", "7"));
        if (reply.StartsWith($"{XsMessageType.Introduce} ", StringComparison.Ordinal) && !IsOpen(name))
        {
            if (_connections.Remove(name, out var old))
            {
                old.Xen.Dispose();
                old.Ours.Dispose();
            }
            _history.Add($"guest {name} = domain {domid}");
            _connections[name] = new Pair(Xen.OpenGuest(domid), Ours.OpenGuest(domid));
            _guests[domid] = name;
        }
        return reply;
    }

    /// <summary>Sends one frame on both daemons' <paramref name="connection"/>, compares the replies, returns xenstored's.</summary>
    public async Task<string> SendAsync(string connection, XsMessageType type, byte[] payload, uint txId = 0)
    {
        var p = _connections[connection];
        uint reqId = _nextReqId++;
        _history.Add($"{connection}: {type} req={reqId} tx={txId} {Escape(payload)}");
        var frame = RawConnection.Frame(type, reqId, txId, payload);
        var xen = ExchangeAsync(p.Xen, frame, p.XenEvents);
        var ours = ExchangeAsync(p.Ours, frame, p.OursEvents);
        await Task.WhenAll(xen, ours);
        Last = (xen.Result, ours.Result);
        _history.Add($"  -> {xen.Result}");
        if (xen.Result != ours.Result)
            Fail($"reply on {connection} differs:\n  xenstored: {Short(xen.Result)}\n  ours:      {Short(ours.Result)}");
        if (xen.Result == "closed")
            p.Closed = true;
        // A released domain's ring is no longer served by either daemon.
        if (type == XsMessageType.Release && xen.Result.StartsWith($"{XsMessageType.Release} ", StringComparison.Ordinal)
            && _guests.Remove(XsCNumber.Atoi(payload.AsSpan(0, Math.Max(0, Array.IndexOf(payload, (byte)0)))), out var released))
            _connections[released].Closed = true;
        await SyncEventsAsync();
        return xen.Result;
    }

    /// <summary>Sends one frame to both daemons without comparing: for the documented deviations.</summary>
    public async Task<(string Xen, string Ours)> SendUncomparedAsync(string connection, XsMessageType type, byte[] payload, uint txId = 0)
    {
        var p = _connections[connection];
        uint reqId = _nextReqId++;
        _history.Add($"{connection}: {type} req={reqId} tx={txId} (not compared) {Escape(payload)}");
        var frame = RawConnection.Frame(type, reqId, txId, payload);
        var xen = ExchangeAsync(p.Xen, frame, p.XenEvents);
        var ours = ExchangeAsync(p.Ours, frame, p.OursEvents);
        await Task.WhenAll(xen, ours);
        return (xen.Result, ours.Result);
    }

    public Task<string> SendAsync(string connection, XsMessageType type, string joinedWithNul, uint txId = 0) =>
        SendAsync(connection, type, Encoding.ASCII.GetBytes(joinedWithNul), txId);

    /// <summary>
    /// Collects the watch events each open connection got so far: a harmless request on every connection, so
    /// everything queued before it has arrived; xenstored queues events before any later reply.
    /// </summary>
    public async Task SyncEventsAsync()
    {
        var open = _connections.Where(c => !c.Value.Closed).ToList();
        var frame = RawConnection.Frame(XsMessageType.GetDomainPath, 0xffff_0000, 0, RawConnection.Strings("0"));
        var tasks = open.SelectMany(c => new[]
        {
            ExchangeAsync(c.Value.Xen, frame, c.Value.XenEvents), ExchangeAsync(c.Value.Ours, frame, c.Value.OursEvents),
        }).ToArray();
        await Task.WhenAll(tasks);
        foreach (var (name, p) in open)
        {
            string xen = string.Join(", ", p.XenEvents), ours = string.Join(", ", p.OursEvents);
            if (p.XenEvents.Count > 0)
                _history.Add($"  {name} events: {xen}");
            p.XenEvents.Clear();
            p.OursEvents.Clear();
            if (xen != ours)
                Fail($"watch events on {name} differ:\n  xenstored: [{Short(xen)}]\n  ours:      [{Short(ours)}]");
        }
    }

    private async Task<string> ExchangeAsync(RawConnection c, byte[] frame, List<string> events)
    {
        try
        {
            await c.SendAsync(frame);
            while (true)
            {
                var (h, payload) = await c.ReceiveAsync(Timeout);
                if (h.Type == XsMessageType.WatchEvent)
                {
                    events.Add(Escape(payload));
                    continue;
                }
                return $"{h.Type} req={h.RequestId} tx={h.TransactionId} {Escape(NormaliseGeneration(h.Type, payload))}";
            }
        }
        catch (Exception e) when (e is EndOfStreamException or IOException or ObjectDisposedException)
        {
            return "closed";
        }
        catch (OperationCanceledException)
        {
            return "timeout";
        }
    }

    /// <summary>
    /// DIRECTORY_PART replies start with the node's generation: a counter private to each daemon (xenstored
    /// also counts transaction starts and its own setup writes), meaningful to clients only as "changed or
    /// not" between calls. It is compared as a placeholder (README Known gaps).
    /// </summary>
    private static byte[] NormaliseGeneration(Wire.XsMessageType type, byte[] payload)
    {
        int nul = Array.IndexOf(payload, (byte)0);
        if (type != Wire.XsMessageType.DirectoryPart || nul < 0)
            return payload;
        return [.. "<gen>"u8.ToArray(), .. payload.AsSpan(nul).ToArray()];
    }

    /// <summary>Payload as text with NULs shown as '|' and other non-printables escaped.</summary>
    public static string Escape(ReadOnlySpan<byte> payload)
    {
        var sb = new StringBuilder("\"");
        foreach (byte b in payload)
        {
            if (b == 0)
                sb.Append('|');
            else if (b is >= 0x20 and < 0x7f and not (byte)'\\' and not (byte)'"')
                sb.Append((char)b);
            else
                sb.Append($"\\x{b:x2}");
        }
        return sb.Append('"').ToString();
    }

    public string History => string.Join('\n', _history.Select(Short));

    private static string Short(string s) => s.Length > 200 ? $"{s[..200]}... ({s.Length} chars)" : s;

    /// <summary>
    /// For investigating: with VMMKIT_XS_DIFF_COLLECT set to a file, divergences are appended there and the
    /// run goes on instead of failing at the first one.
    /// </summary>
    private static readonly string? CollectFile = Environment.GetEnvironmentVariable("VMMKIT_XS_DIFF_COLLECT");

    private void Fail(string what)
    {
        if (CollectFile is { Length: > 0 })
        {
            lock (CollectFile)
            {
                if (!File.Exists(CollectFile + ".history"))
                    File.WriteAllText(CollectFile + ".history", History);
                File.AppendAllText(CollectFile, $"{what}\n  after:\n    {string.Join("\n    ", _history.TakeLast(16).Select(Short))}\n{(what.Contains("closed") ? Tail(Xen.Log) : "")}\n");
            }
            return;
        }
        throw new Xunit.Sdk.XunitException($"xenstored and our daemon diverge: {what}\nHistory:\n{History}\nxenstored log:\n{Tail(Xen.Log)}");
    }

    private static string Tail(string s) => s.Length > 2000 ? s[^2000..] : s;

    public async ValueTask DisposeAsync()
    {
        foreach (var p in _connections.Values)
        {
            p.Xen.Dispose();
            p.Ours.Dispose();
        }
        await Xen.DisposeAsync();
        await Ours.DisposeAsync();
    }
}
