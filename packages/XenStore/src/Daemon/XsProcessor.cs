using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using VmmKit.XenStore.Store;
using VmmKit.XenStore.Watches;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Daemon;

/// <summary>A request being handled: header, payload and the transaction named by <c>tx_id</c>.</summary>
internal ref struct XsRequest
{
    public XsHeader Header;
    public ReadOnlySpan<byte> Payload;
    public XsTransaction? Transaction;
}

/// <summary>
/// The daemon's brain (xenstored's process_message): validates each message, looks up its transaction,
/// dispatches through a handler table indexed by <c>xsd_sockmsg_type</c>, and turns failures into
/// <c>XS_ERROR</c> replies. It also delivers watch events. Callers hold the daemon's store lock.
/// </summary>
internal sealed unsafe partial class XsProcessor : IXsEventSink
{
    [Flags]
    private enum HandlerFlags
    {
        None = 0,
        /// <summary>XS_FLAG_NOTID: the transaction id is ignored.</summary>
        NoTransaction = 1,
        /// <summary>XS_FLAG_PRIV: privileged callers only (EACCES otherwise).</summary>
        Privileged = 2,
    }

    private static readonly delegate*<XsProcessor, XsConnection, ref XsRequest, XsError>[] Handlers = BuildHandlers();
    private static readonly HandlerFlags[] Flags = BuildFlags();

    private readonly List<XsConnection> _connections = [];
    private readonly Dictionary<uint, XsDomain> _domains = [];
    // domid → watches of all its connections (domain.c domain_watch_inc/dec).
    private readonly Dictionary<uint, int> _domainWatches = [];
    private int _nextConnectionId = 1;

    public XsProcessor(XenStoreQuotas quotas)
    {
        GlobalQuotas = quotas;
        Store = new XsStore(quotas, this);
    }

    public XsStore Store { get; }

    /// <summary>The store lock: xenstored is single-threaded, so every message is handled under it.</summary>
    public Lock Gate { get; } = new();

    public XenStoreQuotas GlobalQuotas { get; }

    public Transports.IXenStoreDomainConnector? DomainConnector { get; set; }

    /// <summary>Connections that got output while handling the current message, to be flushed outside the lock.</summary>
    public List<XsConnection> Kicks { get; } = [];

    public IReadOnlyList<XsConnection> Connections => _connections;

    public IReadOnlyDictionary<uint, XsDomain> Domains => _domains;

    public ILogger Logger { get; set; } = NullLogger.Instance;

    /// <summary>The write rate limit (Xen 4.17's <c>wrl_*</c>).</summary>
    public XsWriteRateLimit WriteRate { get; set; } = new(TimeProvider.System);

    private static delegate*<XsProcessor, XsConnection, ref XsRequest, XsError>[] BuildHandlers()
    {
        var t = new delegate*<XsProcessor, XsConnection, ref XsRequest, XsError>[(int)XsMessageType.TypeCount];
        t[(int)XsMessageType.Control] = &DoControl;
        t[(int)XsMessageType.Directory] = &DoDirectory;
        t[(int)XsMessageType.Read] = &DoRead;
        t[(int)XsMessageType.GetPerms] = &DoGetPerms;
        t[(int)XsMessageType.Watch] = &DoWatch;
        t[(int)XsMessageType.Unwatch] = &DoUnwatch;
        t[(int)XsMessageType.TransactionStart] = &DoTransactionStart;
        t[(int)XsMessageType.TransactionEnd] = &DoTransactionEnd;
        t[(int)XsMessageType.Introduce] = &DoIntroduce;
        t[(int)XsMessageType.Release] = &DoRelease;
        t[(int)XsMessageType.GetDomainPath] = &DoGetDomainPath;
        t[(int)XsMessageType.Write] = &DoWrite;
        t[(int)XsMessageType.Mkdir] = &DoMkdir;
        t[(int)XsMessageType.Rm] = &DoRm;
        t[(int)XsMessageType.SetPerms] = &DoSetPerms;
        t[(int)XsMessageType.IsDomainIntroduced] = &DoIsDomainIntroduced;
        t[(int)XsMessageType.Resume] = &DoResume;
        t[(int)XsMessageType.SetTarget] = &DoSetTarget;
        t[(int)XsMessageType.ResetWatches] = &DoResetWatches;
        t[(int)XsMessageType.DirectoryPart] = &DoDirectoryPart;
        t[(int)XsMessageType.GetFeature] = &DoGetFeature;
        t[(int)XsMessageType.SetFeature] = &DoSetFeature;
        t[(int)XsMessageType.GetQuota] = &DoGetQuota;
        t[(int)XsMessageType.SetQuota] = &DoSetQuota;
        return t;
    }

    private static HandlerFlags[] BuildFlags()
    {
        var f = new HandlerFlags[(int)XsMessageType.TypeCount];
        f[(int)XsMessageType.Control] = HandlerFlags.Privileged;
        f[(int)XsMessageType.Watch] = HandlerFlags.NoTransaction;
        f[(int)XsMessageType.Unwatch] = HandlerFlags.NoTransaction;
        f[(int)XsMessageType.Introduce] = HandlerFlags.Privileged;
        f[(int)XsMessageType.Release] = HandlerFlags.Privileged;
        f[(int)XsMessageType.IsDomainIntroduced] = HandlerFlags.Privileged;
        f[(int)XsMessageType.Resume] = HandlerFlags.Privileged;
        f[(int)XsMessageType.SetTarget] = HandlerFlags.Privileged;
        f[(int)XsMessageType.GetFeature] = HandlerFlags.Privileged;
        f[(int)XsMessageType.SetFeature] = HandlerFlags.Privileged;
        f[(int)XsMessageType.GetQuota] = HandlerFlags.Privileged;
        f[(int)XsMessageType.SetQuota] = HandlerFlags.Privileged;
        return f;
    }

    // ---- Connections -------------------------------------------------------------------------

    public XsConnection AddConnection(XsConnectionKind kind, uint domid, Stream? transport, int id = 0)
    {
        if (id == 0)
            id = _nextConnectionId++;
        else
            _nextConnectionId = Math.Max(_nextConnectionId, id + 1);
        var c = new XsConnection(id, kind, domid, transport);
        if (_domains.TryGetValue(domid, out var d) && domid != 0)
            c.Target = d.Target;
        _connections.Add(c);
        XenStoreMetrics.Connection(kind);
        return c;
    }

    /// <summary>Forgets a closed connection: its watches and transactions go with it.</summary>
    public void RemoveConnection(XsConnection c)
    {
        ClearWatches(c);
        DropTransactions(c);
        _connections.Remove(c);
        foreach (var d in _domains.Values)
        {
            if (d.Connection == c)
                d.Connection = null;
        }
    }

    internal XenStoreQuotas QuotasFor(XsConnection c) =>
        _domains.TryGetValue(c.DomainId, out var d) && d.Quotas is not null ? d.Quotas : GlobalQuotas;

    // ---- Dispatch ----------------------------------------------------------------------------

    /// <summary>Handles one complete message from <paramref name="c"/>; replies go to its output queue.</summary>
    public void Process(XsConnection c, in XsHeader header, ReadOnlySpan<byte> payload)
    {
        var req = new XsRequest { Header = header, Payload = payload };
        uint type = (uint)header.Type;
        XenStoreMetrics.Request(header.Type);
        if (type >= (uint)XsMessageType.TypeCount || Handlers[type] == null)
        {
            SendError(c, header, XsError.ENOSYS);
            return;
        }
        var flags = Flags[type];
        if ((flags & HandlerFlags.Privileged) != 0 && !c.Privileged)
        {
            SendError(c, header, XsError.EACCES);
            return;
        }
        if ((flags & HandlerFlags.NoTransaction) == 0 && header.TransactionId != 0)
        {
            if (!c.Transactions.TryGetValue(header.TransactionId, out var tx))
            {
                SendError(c, header, XsError.ENOENT);
                return;
            }
            if (tx.Failed && header.Type != XsMessageType.TransactionEnd)
            {
                SendError(c, header, XsError.EAGAIN);
                return;
            }
            req.Transaction = tx;
        }
        var quotas = QuotasFor(c);
        Store.Quotas = quotas;
        long writes = Store.DirectWrites;
        XsError err;
        try
        {
            err = Handlers[type](this, c, ref req);
        }
        finally
        {
            Store.Quotas = GlobalQuotas;
        }
        if (!c.Privileged && WriteRate.DebitDirect(c.DomainId, Store.DirectWrites - writes))
            XsLog.WriteRateLimited(Logger, c.DomainId);
        if (err != XsError.None)
            SendError(c, header, err);
    }

    private void SendError(XsConnection c, in XsHeader request, XsError error)
    {
        XenStoreMetrics.Error(error);
        var name = XsErrors.WireName(error);
        c.Output.Append(new XsHeader(XsMessageType.Error, request.RequestId, request.TransactionId, (uint)name.Length), name);
    }

    private XsError Reply(XsConnection c, ref XsRequest r, scoped ReadOnlySpan<byte> payload)
    {
        // send_reply: nothing longer than XENSTORE_PAYLOAD_MAX goes out.
        if (payload.Length > XsConstants.PayloadMax)
            return XsError.E2BIG;
        c.Output.Append(new XsHeader(r.Header.Type, r.Header.RequestId, r.Header.TransactionId, (uint)payload.Length), payload);
        return XsError.None;
    }

    private XsError Ack(XsConnection c, ref XsRequest r) => Reply(c, ref r, "OK\0"u8);

    // Tokens and control arguments are arbitrary non-NUL bytes: Latin-1 keeps every byte as one char, so they echo back unchanged.
    private static string Ascii(ReadOnlySpan<byte> s) => Encoding.Latin1.GetString(s);

    // ---- Watch delivery (IXsEventSink) ---------------------------------------------------------

    /// <summary>
    /// fire_watches (watch.c): every watch whose path matches gets <c>path|token|</c>, if its connection may
    /// read the node under the given (old) permissions, its own, or its parent's (watch_permitted); special
    /// events reach connections that may read the special name (check_perms_special: dom0 by default).
    /// </summary>
    public void Fire(string path, XsPermission[]? givenPerms, XsPermission[]? nodePerms, XsPermission[]? parentPerms, bool exact)
    {
        foreach (var c in _connections)
        {
            if (c.Watches.Count == 0 || c.Closed)
                continue;
            bool checkedAccess = false, allowed = false;
            XenStoreQuotas? quotas = null;
            long room = 0;
            foreach (var w in c.Watches)
            {
                string? epath = XsWatchMatcher.Match(w, path, exact);
                if (epath is null)
                    continue;
                if (!checkedAccess)
                {
                    var caller = c.Caller;
                    allowed = path[0] == '@'
                        ? MaySeeSpecial(c, path)
                        : Readable(caller, givenPerms) || Readable(caller, nodePerms) || Readable(caller, parentPerms);
                    checkedAccess = true;
                    quotas = QuotasFor(c);
                    room = EventRoom(c);
                }
                if (!allowed)
                    break;
                if (w.Relative)
                    epath = XsPath.MakeRelative(epath, c.DomainId);
                int dropped = c.Output.DroppedEvents;
                if (c.Output.AppendEvent(epath, w.Token, room, quotas!.EventBacklogBytes, (long)quotas.StoppedReadingAfter.TotalMilliseconds))
                {
                    XenStoreMetrics.EventSent();
                    Kick(c);
                }
                else if (c.Output.DroppedEvents != dropped)
                {
                    XenStoreMetrics.EventDropped();
                }
            }
        }
    }

    /// <summary>
    /// send_event's domain_memory_add_chk: the output an unprivileged connection may have queued is what its
    /// domain's memory quota leaves after its nodes and watches; privileged connections are not limited.
    /// </summary>
    private long EventRoom(XsConnection c) =>
        c.Privileged ? long.MaxValue : QuotasFor(c).Memory - Store.MemoryOf(c.DomainId);

    private static bool Readable(in XsCaller caller, XsPermission[]? perms) => perms is not null && (caller.AccessTo(perms) & XsAccess.Read) != 0;

    private void Kick(XsConnection c)
    {
        if (!Kicks.Contains(c))
            Kicks.Add(c);
    }
}
