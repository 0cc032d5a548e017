using System.Globalization;
using System.Text;
using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Daemon;

/// <summary>CONTROL <c>live-update</c> (tools/xenstored/lu.c and lu_daemon.c; driven by xenstore-control).</summary>
internal sealed unsafe partial class XsProcessor
{
    /// <summary>The version of the state record this daemon writes (lu.c's XS_STATE_VERSION check).</summary>
    private const int StateVersion = 1;

    /// <summary>True when the host can replace the daemon's process image (the standalone daemon); otherwise "live-update" is unknown.</summary>
    public bool LiveUpdateSupported { get; set; }

    /// <summary>The active session, if any.</summary>
    public XsLiveUpdate? LiveUpdate { get; private set; }

    /// <summary>Called (under the store lock) once <c>-s</c> was accepted; the host then polls <see cref="CheckLiveUpdate"/>.</summary>
    public Action<XsLiveUpdate>? LiveUpdateStarted { get; set; }

    /// <summary>What a started live update should do now.</summary>
    public enum LiveUpdateVerdict
    {
        /// <summary>Transactions are open and the timeout has not passed.</summary>
        Wait,
        /// <summary>Dump the state and execute the new binary.</summary>
        Go,
        /// <summary>The session was answered with a refusal and ended.</summary>
        Refused,
    }

    /// <summary>CONTROL live-update with its arguments (<paramref name="args"/>[0] is "live-update").</summary>
    private XsError ControlLiveUpdate(XsConnection c, ref XsRequest r, string[] args)
    {
        if (!LiveUpdateSupported)
            return XsError.EINVAL;
        int num = args.Length - 1;
        if (num < 1)
            return XsError.EINVAL;
        string? text;
        switch (args[1])
        {
            case "-a" when num == 1:
                text = LiveUpdate is null ? "No live-update session active." : null;
                LiveUpdate = null;
                break;
            case "-c" when num == 2:
                if (LiveUpdate is null || LiveUpdate.Requester != c)
                    text = "Not in live-update session.";
                else
                {
                    LiveUpdate.CommandLine = args[2];
                    text = null;
                }
                break;
            case "-f" when num == 2:
                text = BeginLiveUpdate(c, args[2]);
                break;
            case "-s":
                bool force = false;
                uint timeout = 0;
                int version = StateVersion;
                for (int i = 2; i <= num; i++)
                {
                    if (args[i] == "-F")
                        force = true;
                    else if (args[i] == "-t" && i < num)
                        timeout = ParseCount(args[++i]);
                    else if (args[i] == "-v" && i < num)
                        version = (int)ParseCount(args[++i]);
                    else
                        return XsError.EINVAL;
                }
                if (LiveUpdate is null || LiveUpdate.Requester != c)
                    text = "Not in live-update session.";
                else if (version == 0 || version > StateVersion)
                    text = "Migration stream version not supported.";
                else
                {
                    // The answer is delayed: the next daemon sends "OK", or this one the reason it refused.
                    LiveUpdate.Force = force;
                    LiveUpdate.TimeoutSeconds = timeout;
                    LiveUpdate.StartedAt = Environment.TickCount64;
                    LiveUpdate.StartRequest = r.Header;
                    LiveUpdateStarted?.Invoke(LiveUpdate);
                    return XsError.None;
                }
                break;
            default:
                // -b/-d upload a Mini-OS kernel for a xenstore stubdom; a daemon only takes -f.
                return XsError.EINVAL;
        }
        return Reply(c, ref r, Encoding.ASCII.GetBytes((text ?? "OK") + "\0"));
    }

    // atoi: leading digits, anything else 0.
    private static uint ParseCount(string s)
    {
        int n = 0;
        while (n < s.Length && char.IsAsciiDigit(s[n]))
            n++;
        return uint.TryParse(s.AsSpan(0, n), NumberStyles.None, CultureInfo.InvariantCulture, out uint v) ? v : 0;
    }

    /// <summary>lu_binary: the file must exist and be executable; one session at a time.</summary>
    private string? BeginLiveUpdate(XsConnection c, string fileName)
    {
        UnixFileMode mode;
        try
        {
            if (!File.Exists(fileName))
                return "File not accessible.";
            if (OperatingSystem.IsWindows())
                return "File not executable.";
            mode = File.GetUnixFileMode(fileName);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return "File not accessible.";
        }
        if ((mode & (UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute)) == 0)
            return "File not executable.";
        if (!XsExec.IsOurs(fileName))
            return "Not a vmmkit-xenstored: live update to another XenStore daemon is not supported.";
        if (LiveUpdate is not null)
            return "live-update session already active.";
        LiveUpdate = new XsLiveUpdate(c, fileName);
        return null;
    }

    /// <summary>
    /// do_lu_start: go when no transaction is open; otherwise wait until the timeout, then go if forced
    /// (open transactions come back failed, so their commits get EAGAIN) or answer with the reason.
    /// </summary>
    public LiveUpdateVerdict CheckLiveUpdate(XsLiveUpdate session)
    {
        if (LiveUpdate != session || session.Requester.Closed)
        {
            if (LiveUpdate == session)
                LiveUpdate = null;
            return LiveUpdateVerdict.Refused;
        }
        long now = Environment.TickCount64;
        long timeoutMs = session.TimeoutSeconds * 1000L;
        int open = 0, old = 0;
        // lu_check_lu_allowed counts connections with transactions, aged by their oldest one.
        foreach (var conn in _connections)
        {
            if (conn.Transactions.Count == 0)
                continue;
            open++;
            if (now - OldestTransaction(conn) >= timeoutMs)
                old++;
        }
        if (open == 0 || (session.Force && old == open))
            return LiveUpdateVerdict.Go;
        if (now < session.StartedAt + timeoutMs)
            return LiveUpdateVerdict.Wait;
        if (session.Force)
            return LiveUpdateVerdict.Go;
        AnswerLiveUpdate(session, RejectReason(now, timeoutMs));
        return LiveUpdateVerdict.Refused;
    }

    /// <summary>lu_reject_reason: the connections whose oldest transaction outlived the timeout.</summary>
    private string RejectReason(long now, long timeoutMs)
    {
        StringBuilder? sb = null;
        foreach (var conn in _connections)
        {
            if (conn.Transactions.Count == 0)
                continue;
            long oldest = OldestTransaction(conn);
            if (now - oldest < timeoutMs)
                continue;
            sb ??= new StringBuilder("Domains with long running transactions:");
            sb.Append(CultureInfo.InvariantCulture, $"\nDomain {conn.DomainId}: {(now - oldest) / 1000} s");
        }
        return sb?.ToString() ?? "Overlapping transactions";
    }

    private static long OldestTransaction(XsConnection c)
    {
        long oldest = long.MaxValue;
        foreach (var tx in c.Transactions.Values)
            oldest = Math.Min(oldest, tx.StartedAt);
        return oldest;
    }

    /// <summary>Answers the session's <c>-s</c> request with <paramref name="text"/> and ends the session (the caller drains the requester).</summary>
    public void AnswerLiveUpdate(XsLiveUpdate session, string text)
    {
        if (LiveUpdate == session)
            LiveUpdate = null;
        var payload = Encoding.ASCII.GetBytes(text + "\0");
        var h = session.StartRequest;
        session.Requester.Output.Append(new XsHeader(XsMessageType.Control, h.RequestId, h.TransactionId, (uint)payload.Length), payload);
    }

    /// <summary>The reply record for the next daemon, and the session ended here.</summary>
    public XsLiveUpdateReply FinishLiveUpdate(XsLiveUpdate session, string text)
    {
        if (LiveUpdate == session)
            LiveUpdate = null;
        return new XsLiveUpdateReply(session.Requester.Id, session.StartRequest.RequestId, session.StartRequest.TransactionId, text);
    }
}
