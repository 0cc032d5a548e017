using System.Runtime.InteropServices;
using VmmKit.Dom0.Xen.Abi;
using static VmmKit.Dom0.Xen.Abi.SocketMessage;

namespace VmmKit.Dom0.Xen;

/// <summary>The libc calls the channel needs: recvmsg(2) with SCM_RIGHTS, mmap(2) of the machine-memory file.</summary>
internal static unsafe partial class Native
{
    private const int ProtRead = 1, ProtWrite = 2, MapSharedFlag = 1;

    [LibraryImport("libc", EntryPoint = "recvmsg", SetLastError = true)]
    private static partial nint RecvMsg(nint socket, MsgHdr* message, int flags);

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    private static partial nint Mmap(nint address, nuint length, int protection, int flags, int fd, nint offset);

    [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
    private static partial int Munmap(nint address, nuint length);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);

    /// <summary>Receives exactly <paramref name="buffer"/>'s length with the file descriptor sent alongside (-1 if none).</summary>
    public static bool TryReceiveWithFd(nint socket, Span<byte> buffer, out int fd)
    {
        fd = -1;
        byte* control = stackalloc byte[64];
        new Span<byte>(control, 64).Clear();
        fixed (byte* p = buffer)
        {
            var iov = new IoVec { Base = p, Length = (nuint)buffer.Length };
            var msg = new MsgHdr { Iov = &iov, IovLength = 1, Control = control, ControlLength = 64 };
            nint n = RecvMsg(socket, &msg, 0x100 /* MSG_WAITALL */);
            if (msg.ControlLength >= 20 && *(int*)(control + 8) == SolSocket && *(int*)(control + 12) == ScmRights)
                fd = *(int*)(control + 16);
            return n == buffer.Length;
        }
    }

    /// <summary>Maps <paramref name="length"/> bytes of <paramref name="fd"/> shared, read-write.</summary>
    public static byte* MapShared(int fd, ulong length)
    {
        nint p = Mmap(0, (nuint)length, ProtRead | ProtWrite, MapSharedFlag, fd, 0);
        if (p == -1 || p == 0)
            throw new IOException($"mmap of the machine-memory file failed (errno {Marshal.GetLastPInvokeError()})");
        return (byte*)p;
    }

    /// <summary>Unmaps a mapping made by <see cref="MapShared"/>.</summary>
    public static void Unmap(byte* p, ulong length) => _ = Munmap((nint)p, (nuint)length);

    /// <summary>Closes a file descriptor.</summary>
    public static void CloseFd(int fd) => _ = Close(fd);
}
