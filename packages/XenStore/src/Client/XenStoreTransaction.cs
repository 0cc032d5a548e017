namespace VmmKit.XenStore.Client;

/// <summary>An open transaction: pass it to the client's operations to run them inside it.</summary>
public sealed class XenStoreTransaction
{
    internal XenStoreTransaction(uint id) => Id = id;

    /// <summary>The daemon's transaction id (the <c>tx_id</c> header field).</summary>
    public uint Id { get; }
}
