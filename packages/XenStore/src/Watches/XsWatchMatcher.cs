using VmmKit.XenStore.Store;

namespace VmmKit.XenStore.Watches;

/// <summary>
/// The matching rule of xenstored's fire_watches (watch.c): an event on <c>path</c> reaches a watch on
/// <c>wpath</c> when <c>path</c> is <c>wpath</c> or below it; a recursive removal of an ancestor of
/// <c>wpath</c> (a non-exact event) reaches the watch with <c>wpath</c> itself as the event path.
/// Special names (<c>@introduceDomain</c>, <c>@releaseDomain</c>) only match themselves.
/// </summary>
internal static class XsWatchMatcher
{
    /// <summary>The path to report, or null when the event does not reach the watch.</summary>
    public static string? Match(XsWatch watch, string eventPath, bool exact)
    {
        bool eventSpecial = eventPath.Length > 0 && eventPath[0] == '@';
        if (eventSpecial || watch.IsSpecial)
            return eventSpecial && watch.Path == eventPath ? eventPath : null;
        if (XsPath.IsChild(eventPath, watch.Path))
            return eventPath;
        if (!exact && XsPath.IsChild(watch.Path, eventPath))
            return watch.Path;
        return null;
    }
}
