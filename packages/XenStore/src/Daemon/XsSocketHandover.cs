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
    // fcntl.h: F_SETFD and FD_CLOEXEC.
    private const int F_SETFD = 2;

    [DllImport("libc", SetLastError = true)]
    private static extern int dup(int fd);

    [DllImport("libc", SetLastError = true)]
    private static extern int fcntl(int fd, int cmd, int arg);

    [DllImport("libc", SetLastError = true)]
    private static extern int close(int fd);

    /// <summary>
    /// Duplicates the socket's descriptor (without FD_CLOEXEC) and disposes the socket, which closes only the
    /// original descriptor. The caller must have no operation pending on the socket. Returns the new fd.
    /// </summary>
    /// <remarks>
    /// Disposing a listening socket that .NET bound removes its file; <paramref name="boundPath"/> (the
    /// listener's path) is moved aside meanwhile and put back, so the socket keeps its name for the new daemon.
    /// </remarks>
    public static int Detach(Socket socket, string? boundPath = null)
    {
        int fd = (int)socket.SafeHandle.DangerousGetHandle();
        int copy = dup(fd);
        if (copy < 0)
            throw new IOException($"dup({fd}) failed: errno {Marshal.GetLastPInvokeError()}");
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

    /// <summary>Closes a descriptor nobody adopted.</summary>
    public static void Close(int fd) => _ = close(fd);
}
