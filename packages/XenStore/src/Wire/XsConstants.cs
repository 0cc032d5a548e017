namespace VmmKit.XenStore.Wire;

/// <summary>Limits and ring constants from <c>xen/io/xs_wire.h</c>.</summary>
public static class XsConstants
{
    /// <summary><c>sizeof(struct xsd_sockmsg)</c>: the 16-byte message header.</summary>
    public const int HeaderSize = 16;

    /// <summary><c>XENSTORE_PAYLOAD_MAX</c>: the largest payload in either direction.</summary>
    public const int PayloadMax = 4096;

    /// <summary><c>XENSTORE_ABS_PATH_MAX</c>: the longest absolute path.</summary>
    public const int AbsPathMax = 3072;

    /// <summary><c>XENSTORE_REL_PATH_MAX</c>: the longest path relative to a domain's home.</summary>
    public const int RelPathMax = 2048;

    /// <summary><c>XENSTORE_RING_SIZE</c>: bytes in each of the request and response rings.</summary>
    public const int RingSize = 1024;

    /// <summary><c>XENSTORE_SERVER_FEATURE_RECONNECTION</c>: the server can reconnect a ring.</summary>
    public const uint ServerFeatureReconnection = 1;

    /// <summary><c>XENSTORE_SERVER_FEATURE_ERROR</c>: the ring page has the <c>error</c> field.</summary>
    public const uint ServerFeatureError = 2;

    /// <summary><c>XENSTORE_CONNECTED</c>: the steady state of the <c>connection</c> field.</summary>
    public const uint Connected = 0;

    /// <summary><c>XENSTORE_RECONNECT</c>: the guest asked for a reconnect.</summary>
    public const uint Reconnect = 1;

    /// <summary><c>XENSTORE_ERROR_NONE</c>.</summary>
    public const uint ErrorNone = 0;

    /// <summary><c>XENSTORE_ERROR_COMM</c>: communication problem.</summary>
    public const uint ErrorComm = 1;

    /// <summary><c>XENSTORE_ERROR_RINGIDX</c>: invalid ring index.</summary>
    public const uint ErrorRingIdx = 2;

    /// <summary><c>XENSTORE_ERROR_PROTO</c>: protocol violation (payload too long).</summary>
    public const uint ErrorProto = 3;

    /// <summary><c>DOMID_FIRST_RESERVED</c> (xen.h): domain ids from here on are special.</summary>
    public const uint DomidFirstReserved = 0x7FF0;

    /// <summary><c>DOMID_SELF</c> (xen.h): IS_DOMAIN_INTRODUCED always answers "T" for it.</summary>
    public const uint DomidSelf = 0x7FF0;
}
