using VmmKit.XenStore.Wire;

namespace VmmKit.XenStore.Client;

/// <summary>The daemon answered a request with <c>XS_ERROR</c>.</summary>
public sealed class XenStoreException : Exception
{
    /// <summary>Creates the exception for <paramref name="error"/> returned to a <paramref name="request"/>.</summary>
    public XenStoreException(XsError error, XsMessageType request)
        : base($"XenStore {request} failed: {error}")
    {
        Error = error;
        Request = request;
    }

    /// <summary>Creates the exception with a message.</summary>
    public XenStoreException(string message)
        : base(message)
    {
        Error = XsError.EIO;
        Request = XsMessageType.Invalid;
    }

    /// <summary>Creates the exception with a message and an inner exception.</summary>
    public XenStoreException(string message, Exception innerException)
        : base(message, innerException)
    {
        Error = XsError.EIO;
        Request = XsMessageType.Invalid;
    }

    /// <summary>Creates an exception with no details.</summary>
    public XenStoreException()
        : this("XenStore request failed")
    {
    }

    /// <summary>The errno the daemon sent.</summary>
    public XsError Error { get; }

    /// <summary>The request type that failed.</summary>
    public XsMessageType Request { get; }
}
