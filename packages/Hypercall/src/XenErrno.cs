namespace VmmKit.Hypercall;

/// <summary>
/// Xen's errno values (<c>xen/errno.h</c>, <c>enum xen_errno</c>, which keeps the x86 Linux
/// numbers). A failing hypercall returns the negated value in RAX/EAX, e.g. <c>-EFAULT</c> = -14;
/// see <see cref="XenErrnoExtensions.Negated(XenErrno)"/>.
/// </summary>
public enum XenErrno
{
    /// <summary>Operation not permitted.</summary>
    EPERM = 1,
    /// <summary>No such file or directory.</summary>
    ENOENT = 2,
    /// <summary>No such process (Xen: no such domain).</summary>
    ESRCH = 3,
    /// <summary>I/O error.</summary>
    EIO = 5,
    /// <summary>No such device or address.</summary>
    ENXIO = 6,
    /// <summary>Argument list too long.</summary>
    E2BIG = 7,
    /// <summary>Exec format error.</summary>
    ENOEXEC = 8,
    /// <summary>Bad file number (Xen: bad event channel port or grant reference).</summary>
    EBADF = 9,
    /// <summary>No child processes.</summary>
    ECHILD = 10,
    /// <summary>Try again; <c>EWOULDBLOCK</c> has the same value.</summary>
    EAGAIN = 11,
    /// <summary>Out of memory.</summary>
    ENOMEM = 12,
    /// <summary>Permission denied.</summary>
    EACCES = 13,
    /// <summary>Bad address: a guest pointer that cannot be read or written.</summary>
    EFAULT = 14,
    /// <summary>Device or resource busy.</summary>
    EBUSY = 16,
    /// <summary>File exists.</summary>
    EEXIST = 17,
    /// <summary>Cross-device link.</summary>
    EXDEV = 18,
    /// <summary>No such device.</summary>
    ENODEV = 19,
    /// <summary>Not a directory.</summary>
    ENOTDIR = 20,
    /// <summary>Is a directory.</summary>
    EISDIR = 21,
    /// <summary>Invalid argument.</summary>
    EINVAL = 22,
    /// <summary>File table overflow.</summary>
    ENFILE = 23,
    /// <summary>Too many open files.</summary>
    EMFILE = 24,
    /// <summary>No space left on device.</summary>
    ENOSPC = 28,
    /// <summary>Read-only file system.</summary>
    EROFS = 30,
    /// <summary>Too many links.</summary>
    EMLINK = 31,
    /// <summary>Math argument out of domain of function.</summary>
    EDOM = 33,
    /// <summary>Math result not representable.</summary>
    ERANGE = 34,
    /// <summary>Resource deadlock would occur; <c>EDEADLOCK</c> has the same value.</summary>
    EDEADLK = 35,
    /// <summary>File name too long.</summary>
    ENAMETOOLONG = 36,
    /// <summary>No record locks available.</summary>
    ENOLCK = 37,
    /// <summary>Function not implemented: an unknown or unsupported hypercall or sub-operation.</summary>
    ENOSYS = 38,
    /// <summary>Directory not empty.</summary>
    ENOTEMPTY = 39,
    /// <summary>No data available.</summary>
    ENODATA = 61,
    /// <summary>Timer expired.</summary>
    ETIME = 62,
    /// <summary>Not a data message.</summary>
    EBADMSG = 74,
    /// <summary>Value too large for defined data type.</summary>
    EOVERFLOW = 75,
    /// <summary>Illegal byte sequence.</summary>
    EILSEQ = 84,
    /// <summary>Socket operation on non-socket.</summary>
    ENOTSOCK = 88,
    /// <summary>Message too large.</summary>
    EMSGSIZE = 90,
    /// <summary>Operation not supported on transport endpoint.</summary>
    EOPNOTSUPP = 95,
    /// <summary>Address already in use.</summary>
    EADDRINUSE = 98,
    /// <summary>Cannot assign requested address.</summary>
    EADDRNOTAVAIL = 99,
    /// <summary>No buffer space available.</summary>
    ENOBUFS = 105,
    /// <summary>Transport endpoint is already connected.</summary>
    EISCONN = 106,
    /// <summary>Transport endpoint is not connected.</summary>
    ENOTCONN = 107,
    /// <summary>Connection timed out.</summary>
    ETIMEDOUT = 110,
    /// <summary>Connection refused.</summary>
    ECONNREFUSED = 111,
}

/// <summary>Conversions between <see cref="XenErrno"/> and hypercall return values.</summary>
public static class XenErrnoExtensions
{
    /// <summary>The hypercall return value for this error: the negated errno, as Xen returns it.</summary>
    /// <param name="errno">The error.</param>
    /// <returns><c>-(long)errno</c>.</returns>
    public static long Negated(this XenErrno errno) => -(long)errno;
}
