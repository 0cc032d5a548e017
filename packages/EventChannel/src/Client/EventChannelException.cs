using VmmKit.Hypercall;

namespace VmmKit.EventChannel;

/// <summary>An event channel operation failed with Xen's <see cref="Errno"/> (libxenevtchn sets <c>errno</c>).</summary>
public sealed class EventChannelException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="errno">The error.</param>
    /// <param name="operation">What failed.</param>
    public EventChannelException(XenErrno errno, string operation)
        : base($"{operation} failed: {errno} (-{(int)errno})")
    {
        Errno = errno;
    }

    /// <summary>Creates the exception with a message.</summary>
    public EventChannelException() : this(XenErrno.EINVAL, "event channel operation") { }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">The message.</param>
    public EventChannelException(string message) : base(message) { Errno = XenErrno.EINVAL; }

    /// <summary>Creates the exception with a message and inner exception.</summary>
    /// <param name="message">The message.</param>
    /// <param name="innerException">The cause.</param>
    public EventChannelException(string message, Exception innerException) : base(message, innerException) { Errno = XenErrno.EINVAL; }

    /// <summary>The errno.</summary>
    public XenErrno Errno { get; }

    internal static uint Check(long rc, string operation) =>
        rc >= 0 ? (uint)rc : throw new EventChannelException((XenErrno)(-rc), operation);
}
