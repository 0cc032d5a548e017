using VmmKit.XenStore.Store;

namespace VmmKit.XenStore.Watches;

/// <summary>
/// The matching rule of xenstored's fire_watches (watch.c, Xen 4.17): an exact event (a node removed below
/// the path an RM named) reaches only a watch on that very path; any other event reaches watches on the
/// path or an ancestor of it (is_child). Special names (<c>@introduceDomain</c>, <c>@releaseDomain</c>)
/// only match themselves. The event is reported with the changed node's path.
/// </summary>
internal static class XsWatchMatcher
{
    /// <summary>The path to report, or null when the event does not reach the watch.</summary>
    public static string? Match(XsWatch watch, string eventPath, bool exact)
    {
        if (exact || eventPath[0] == '@' || watch.Path[0] == '@')
            return watch.Path == eventPath ? eventPath : null;
        if (watch.Path == "/")
            return eventPath;
        return eventPath.StartsWith(watch.Path, StringComparison.Ordinal)
            && (eventPath.Length == watch.Path.Length || eventPath[watch.Path.Length] == '/') ? eventPath : null;
    }
}
