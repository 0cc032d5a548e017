using VmmKit.Hypercall;

namespace VmmKit.Dom0.Xen;

/// <summary>A hypercall failed with Xen's errno (what libxenctrl reports through errno).</summary>
public sealed class XenException : Exception
{
    /// <summary>Creates the exception for <paramref name="operation"/> failing with <paramref name="errno"/>.</summary>
    public XenException(XenErrno errno, string operation)
        : base($"{operation} failed: {errno} (-{(int)errno})")
    {
        Errno = errno;
    }

    /// <summary>Creates the exception with EINVAL.</summary>
    public XenException() : this(XenErrno.EINVAL, "hypercall") { }

    /// <summary>Creates the exception with a message (EINVAL).</summary>
    public XenException(string message) : base(message) { Errno = XenErrno.EINVAL; }

    /// <summary>Creates the exception with a message and inner exception (EINVAL).</summary>
    public XenException(string message, Exception innerException) : base(message, innerException) { Errno = XenErrno.EINVAL; }

    /// <summary>Xen's errno.</summary>
    public XenErrno Errno { get; }

    /// <summary>Throws for a negative hypercall result; returns the result otherwise.</summary>
    public static long Check(long rc, string operation) => rc < 0 ? throw new XenException((XenErrno)(-rc), operation) : rc;
}
