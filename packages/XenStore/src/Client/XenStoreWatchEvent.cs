namespace VmmKit.XenStore.Client;

/// <summary>A <c>XS_WATCH_EVENT</c>: the path that changed and the token the watch was registered with.</summary>
/// <param name="Path">The event path (relative when the watch was relative).</param>
/// <param name="Token">The watch's token.</param>
public readonly record struct XenStoreWatchEvent(string Path, string Token);
