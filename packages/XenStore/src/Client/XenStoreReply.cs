using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Client;

/// <summary>A raw reply: its header and payload.</summary>
/// <param name="Header">The reply header (type <see cref="XsMessageType.Error"/> for errors).</param>
/// <param name="Payload">The payload bytes.</param>
public readonly record struct XenStoreReply(XsHeader Header, byte[] Payload)
{
    /// <summary>The error carried by an <c>XS_ERROR</c> reply, else <see cref="XsError.None"/>.</summary>
    public XsError Error => Header.Type == XsMessageType.Error ? XsErrors.FromWireName(Payload) : XsError.None;
}
