using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Daemon;

/// <summary>
/// A live-update session (tools/xenstored/lu.h <c>struct live_update</c>): begun by
/// <c>live-update -f &lt;binary&gt;</c>, optionally given a command line with <c>-c</c>, started with
/// <c>-s [-t &lt;seconds&gt;] [-F]</c> and abandoned with <c>-a</c>. Guarded by the store lock.
/// </summary>
internal sealed class XsLiveUpdate(XsConnection requester, string fileName)
{
    /// <summary>The connection that began the session; only it may configure and start it.</summary>
    public XsConnection Requester { get; } = requester;

    /// <summary>The new daemon binary to execute.</summary>
    public string FileName { get; } = fileName;

    /// <summary>The new daemon's arguments (split on blanks), or null to reuse the current ones.</summary>
    public string? CommandLine { get; set; }

    /// <summary>Go ahead after <see cref="TimeoutSeconds"/> even if transactions are still open (<c>-F</c>).</summary>
    public bool Force { get; set; }

    /// <summary>How long to wait for open transactions to end (<c>-t</c>).</summary>
    public uint TimeoutSeconds { get; set; }

    /// <summary>When <c>-s</c> arrived (<see cref="Environment.TickCount64"/>), or null before.</summary>
    public long? StartedAt { get; set; }

    /// <summary>The <c>-s</c> request, answered by the next daemon (or with the reason it was refused).</summary>
    public XsHeader StartRequest { get; set; }
}

/// <summary>The answer a restored daemon sends to the connection that asked for the live update.</summary>
internal readonly record struct XsLiveUpdateReply(int ConnectionId, uint RequestId, uint TransactionId, string Text);
