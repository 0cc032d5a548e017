using System.Text;
using VmmKit.XenStore.Store;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Daemon;

/// <summary>INTRODUCE, RELEASE, GET_DOMAIN_PATH, IS_DOMAIN_INTRODUCED, RESUME, SET_TARGET (domain.c).</summary>
internal sealed unsafe partial class XsProcessor
{
    /// <summary>Called (under the lock) when a domain's ring must be served: the daemon starts its reader.</summary>
    public Action<XsConnection>? ServeConnection { get; set; }

    /// <summary>A real domain id: not dom0 and not a DOMID_* special value.</summary>
    private static bool TryDomid(ReadOnlySpan<byte> text, bool allowDom0, out uint domid)
    {
        domid = 0;
        if (!XsPayload.TryParseUInt(text, XsConstants.DomidFirstReserved - 1, out ulong v))
            return false;
        domid = (uint)v;
        return allowDom0 || domid != 0;
    }

    /// <summary>
    /// INTRODUCE <c>&lt;domid&gt;|&lt;mfn&gt;|&lt;evtchn&gt;|?</c> (domain.c do_introduce): at least three strings,
    /// domid and port through atoi, the gfn ignored, port 0 refused. dom0 is always introduced: a repeat
    /// only rebinds its event channel.
    /// </summary>
    private static XsError DoIntroduce(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        if (XsPayload.CountStrings(r.Payload) < 3)
            return XsError.EINVAL;
        int at = 0;
        XsPayload.TryNext(r.Payload, ref at, out var domText);
        XsPayload.TryNext(r.Payload, ref at, out var mfnText);
        XsPayload.TryNext(r.Payload, ref at, out var portText);
        uint domid = XsCNumber.Atoi(domText);
        uint port = XsCNumber.Atoi(portText);
        if (port == 0)
            return XsError.EINVAL;
        if (domid == 0)
            return p.Ack(c, ref r);
        if (domid >= XsConstants.DomidFirstReserved)
            return XsError.EINVAL;
        XsPayload.TryParseLong(mfnText, out long mfn);
        bool fresh = !p._domains.TryGetValue(domid, out var domain);
        if (fresh)
        {
            domain = new XsDomain(domid);
            p._domains.Add(domid, domain);
            p.WriteRate.Add(domid);
            // introduce_domain: find_or_alloc_domain keeps a struct a permission reference allocated.
            p.Store.ReferenceDomain(domid);
        }
        domain!.Mfn = mfn;
        domain.EventChannel = port;
        if (p.DomainConnector is { } connector && domain.Connection is null)
            p.AttachDomainRing(domain, connector.Connect(domid, mfn, port));
        else if (!fresh && domain.Connection is { } again)
        {
            // domain_conn_reset: a repeated INTRODUCE drops the domain's watches, transactions, queued output
            // and partly read request, zeroes the ring indexes and answers a guest waiting to reconnect.
            p.ClearWatches(again);
            p.DropTransactions(again);
            again.Output.Clear();
            (again.Transport as Transports.XenStoreRingStream)?.ResetIndexes();
        }
        // introduce_domain fires @introduceDomain before do_introduce acknowledges.
        if (fresh)
            p.Fire(XsPath.IntroduceDomain, null, null, null, false);
        return p.Ack(c, ref r);
    }

    /// <summary>Starts serving a domain's ring binding (on INTRODUCE, or when the host attaches it directly).</summary>
    public XsConnection? AttachDomainRing(XsDomain domain, Transports.XenStoreRingBinding? binding)
    {
        if (binding is null)
            return null;
        binding.Stream.InitializeServer(XsConstants.ServerFeatureReconnection | XsConstants.ServerFeatureError);
        domain.Binding = binding;
        var conn = domain.Connection;
        if (conn is null || conn.Closed)
        {
            conn = AddConnection(XsConnectionKind.DomainRing, domain.DomainId, binding.Stream);
            domain.Connection = conn;
        }
        else
        {
            conn.Transport = binding.Stream;
        }
        conn.Target = domain.Target;
        var reconnecting = conn;
        binding.Stream.Reconnected += () =>
        {
            // The guest restarted its side of the ring: its watches, transactions and queued output are gone
            // (xenstore-ring.txt; domain.c domain_conn_reset: conn_free_buffered_data).
            lock (Gate)
            {
                ClearWatches(reconnecting);
                DropTransactions(reconnecting);
                reconnecting.Output.Clear();
            }
        };
        ServeConnection?.Invoke(conn);
        return conn;
    }

    public XsDomain GetOrAddDomain(uint domid)
    {
        if (!_domains.TryGetValue(domid, out var d))
        {
            d = new XsDomain(domid);
            _domains.Add(domid, d);
            Store.ReferenceDomain(domid);
            WriteRate.Add(domid);
        }
        return d;
    }

    /// <summary>RELEASE <c>&lt;domid&gt;|</c>: disconnect, drop its watches and transactions, clean its permissions, fire @releaseDomain.</summary>
    private static XsError DoRelease(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        var err = OneArgDomain(p, ref r, out uint domid);
        if (err != XsError.None)
            return err;
        if (!p._domains.Remove(domid, out var domain))
            return XsError.ENOENT;
        // talloc_free(domain->conn): the domain's connection goes with its watches and transactions; here a
        // domain may have more than its ring (in-process streams), and none may keep acting for a released id.
        foreach (var dc in p._connections.Where(x => x.DomainId == domid).ToList())
        {
            dc.Close();
            p.RemoveConnection(dc);
        }
        foreach (var other in p._domains.Values)
        {
            if (other.Target == domid)
                other.Target = null;
        }
        foreach (var conn in p._connections)
        {
            if (conn.Target == domid)
                conn.Target = null;
        }
        p.Store.ForgetDomain(domid);
        p.ForgetSpecialPermissions(domid);
        p.WriteRate.Forget(domid);
        // destroy_domain fires @releaseDomain before do_release acknowledges.
        p.Fire(XsPath.ReleaseDomain, null, null, null, false);
        return p.Ack(c, ref r);
    }

    /// <summary>onearg_domain (domain.c): one argument, atoi, dom0 refused (EINVAL), else it must be introduced (ENOENT).</summary>
    private static XsError OneArgDomain(XsProcessor p, ref XsRequest r, out uint domid)
    {
        domid = 0;
        if (!XsPayload.TryOneArg(r.Payload, out var text))
            return XsError.EINVAL;
        domid = XsCNumber.Atoi(text);
        if (domid == 0)
            return XsError.EINVAL;
        return p._domains.ContainsKey(domid) ? XsError.None : XsError.ENOENT;
    }

    /// <summary>GET_DOMAIN_PATH <c>&lt;domid&gt;|</c>: any number atoi makes of it (domain.c), introduced or not.</summary>
    private static XsError DoGetDomainPath(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        if (!XsPayload.TryOneArg(r.Payload, out var text))
            return XsError.EINVAL;
        string path = XsPath.DomainPath(XsCNumber.Atoi(text));
        Span<byte> reply = stackalloc byte[path.Length + 1];
        Encoding.ASCII.GetBytes(path, reply);
        reply[^1] = 0;
        return p.Reply(c, ref r, reply);
    }

    private static XsError DoIsDomainIntroduced(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        if (!XsPayload.TryOneArg(r.Payload, out var text))
            return XsError.EINVAL;
        // domain.c: atoi; DOMID_SELF is always "introduced", and so is dom0.
        uint domid = XsCNumber.Atoi(text);
        bool introduced = domid == 0 || domid == XsConstants.DomidSelf || p._domains.ContainsKey(domid);
        return p.Reply(c, ref r, introduced ? "T\0"u8 : "F\0"u8);
    }

    private static XsError DoResume(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        var err = OneArgDomain(p, ref r, out _);
        return err != XsError.None ? err : p.Ack(c, ref r);
    }

    /// <summary>SET_TARGET <c>&lt;domid&gt;|&lt;tdomid&gt;|</c>: <c>domid</c> may act as <c>tdomid</c>'s owner.</summary>
    private static XsError DoSetTarget(XsProcessor p, XsConnection c, ref XsRequest r)
    {
        // domain.c do_set_target: at least two strings, both atoi, both introduced (dom0 always is).
        if (XsPayload.CountStrings(r.Payload) < 2)
            return XsError.EINVAL;
        int at = 0;
        XsPayload.TryNext(r.Payload, ref at, out var a);
        XsPayload.TryNext(r.Payload, ref at, out var b);
        uint domid = XsCNumber.Atoi(a), target = XsCNumber.Atoi(b);
        if ((domid != 0 && !p._domains.ContainsKey(domid)) || (target != 0 && !p._domains.ContainsKey(target)))
            return XsError.ENOENT;
        if (domid == 0)
            return p.Ack(c, ref r);
        var domain = p._domains[domid];
        domain.Target = target;
        foreach (var conn in p._connections)
        {
            if (conn.DomainId == domid && conn.Kind == XsConnectionKind.DomainRing)
                conn.Target = target;
        }
        return p.Ack(c, ref r);
    }
}
