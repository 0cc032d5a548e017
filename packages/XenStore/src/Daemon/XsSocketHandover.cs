using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace VmmKit.XenStore.Daemon;

/// <summary>
/// Keeps a socket's file descriptor open across a live update (tools/xenstored/lu_daemon.c: the socket fds
/// survive the exec and the new daemon re-adopts them from the connection records of
/// docs/designs/xenstore-migration.md). The old <see cref="Socket"/> is replaced by a duplicate descriptor
/// with FD_CLOEXEC clear, so it also survives an execve.
/// </summary>
internal static partial class XsSocketHandover
{
    // fcntl.h: F_DUPFD (the copy has FD_CLOEXEC clear) and F_SETFD.
    private const int F_DUPFD = 0;
    private const int F_SETFD = 2;

    // sys/socket.h: SOL_SOCKET options that identify what a descriptor is.
    private const int SOL_SOCKET = 1;
    private const int SO_TYPE = 3;
    private const int SO_ACCEPTCONN = 30;
    private const int SO_DOMAIN = 39;
    private const int SOCK_STREAM = 1;
    private const int AF_UNIX = 1;

    [DllImport("libc", SetLastError = true)]
    private static extern int fcntl(int fd, int cmd, int arg);

    [DllImport("libc", SetLastError = true)]
    private static extern unsafe int getsockopt(int fd, int level, int name, int* value, int* length);

    /// <summary>
    /// Duplicates the socket's descriptor (without FD_CLOEXEC) and disposes the socket, which closes only the
    /// original descriptor. The caller must have no operation pending on the socket. Returns the new fd.
    /// </summary>
    /// <remarks>
    /// Disposing a listening socket that .NET bound itself removes its file; for such a socket
    /// <paramref name="boundPath"/> is moved aside meanwhile and put back. Sockets made by <see cref="Adopt"/>
    /// leave the file alone, so the daemon re-wraps its listener this way as soon as it is bound.
    /// </remarks>
    public static int Detach(Socket socket, string? boundPath = null)
    {
        int fd = (int)socket.SafeHandle.DangerousGetHandle();
        // The duplicate gets a number above the original's. Closing the original leaves its epoll registration
        // (keyed by number and open file) in .NET's engine, because the file stays open through the copy; if the
        // copy took a number this file was registered under before, adopting it would fail with EEXIST. Numbers
        // only grow along a chain of handovers, so that never happens.
        int copy = fcntl(fd, F_DUPFD, fd + 1);
        if (copy < 0)
            throw new IOException($"fcntl({fd}, F_DUPFD) failed: errno {Marshal.GetLastPInvokeError()}");
        // .NET only shuts a socket down on dispose when its fd has FD_CLOEXEC set (it could be shared with
        // another process otherwise); clearing it keeps the shared open file description untouched.
        _ = fcntl(fd, F_SETFD, 0);
        string? aside = null;
        if (!string.IsNullOrEmpty(boundPath) && File.Exists(boundPath))
        {
            aside = boundPath + ".lu";
            File.Move(boundPath, aside, overwrite: true);
        }
        socket.Dispose();
        if (aside is not null)
            File.Move(aside, boundPath!, overwrite: true);
        return copy;
    }

    /// <summary>Takes ownership of a descriptor produced by <see cref="Detach"/>.</summary>
    public static Socket Adopt(int fd) => new(new SafeSocketHandle((IntPtr)fd, ownsHandle: true));

    /// <summary>
    /// Checks that a descriptor named by a state record is what the record says: an open Unix stream
    /// socket, listening or connected. Anything else is <see cref="InvalidDataException"/>, so a bad record
    /// can never make the daemon take over (and later close) an unrelated file. Returns <paramref name="fd"/>.
    /// </summary>
    public static int Validate(int fd, bool listening)
    {
        if (fd < 0 || Option(fd, SO_DOMAIN) != AF_UNIX || Option(fd, SO_TYPE) != SOCK_STREAM || (Option(fd, SO_ACCEPTCONN) == 1) != listening)
            throw new InvalidDataException($"fd {fd} in the XenStore state record is not a {(listening ? "listening" : "connected")} Unix stream socket");
        return fd;
    }

    private static unsafe int Option(int fd, int name)
    {
        int value = -1, length = sizeof(int);
        return getsockopt(fd, SOL_SOCKET, name, &value, &length) == 0 ? value : -1;
    }
}
