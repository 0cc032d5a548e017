namespace VmmKit.XenStore.Transports;

/// <summary>Which end of a XenStore ring a stream is.</summary>
public enum XenStoreRingRole
{
    /// <summary>The daemon: reads <c>req</c>, writes <c>rsp</c>.</summary>
    Server,
    /// <summary>The guest: writes <c>req</c>, reads <c>rsp</c>.</summary>
    Client,
}
