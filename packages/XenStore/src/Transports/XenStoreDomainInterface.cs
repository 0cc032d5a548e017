namespace VmmKit.XenStore.Transports;

/// <summary>
/// Byte offsets of <c>struct xenstore_domain_interface</c> (xen/io/xs_wire.h): two 1024-byte rings
/// (<c>req</c> for requests to the daemon, <c>rsp</c> for replies and watch events), their free-running
/// 32-bit consumer/producer indexes (masked with <c>MASK_XENSTORE_IDX</c>), and the
/// <c>server_features</c>, <c>connection</c> and <c>error</c> fields. Checked against gcc by a layout test.
/// </summary>
public static class XenStoreDomainInterface
{
    /// <summary>Offset of <c>char req[XENSTORE_RING_SIZE]</c>.</summary>
    public const int Req = 0;
    /// <summary>Offset of <c>char rsp[XENSTORE_RING_SIZE]</c>.</summary>
    public const int Rsp = 1024;
    /// <summary>Offset of <c>XENSTORE_RING_IDX req_cons</c>.</summary>
    public const int ReqCons = 2048;
    /// <summary>Offset of <c>XENSTORE_RING_IDX req_prod</c>.</summary>
    public const int ReqProd = 2052;
    /// <summary>Offset of <c>XENSTORE_RING_IDX rsp_cons</c>.</summary>
    public const int RspCons = 2056;
    /// <summary>Offset of <c>XENSTORE_RING_IDX rsp_prod</c>.</summary>
    public const int RspProd = 2060;
    /// <summary>Offset of <c>uint32_t server_features</c>.</summary>
    public const int ServerFeatures = 2064;
    /// <summary>Offset of <c>uint32_t connection</c>.</summary>
    public const int Connection = 2068;
    /// <summary>Offset of <c>uint32_t error</c>.</summary>
    public const int Error = 2072;
    /// <summary><c>sizeof(struct xenstore_domain_interface)</c>.</summary>
    public const int Size = 2076;
}
