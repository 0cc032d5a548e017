namespace VmmKit.XenStore.Transports;

/// <summary>A 4 KiB ring page in ordinary (pinned) memory, for in-process guests and tests.</summary>
public sealed class XenStoreMemoryRingPage : IXenStoreRingPage
{
    private readonly byte[] _page = GC.AllocateArray<byte>(4096, pinned: true);

    /// <inheritdoc/>
    public Span<byte> Span => _page;
}
