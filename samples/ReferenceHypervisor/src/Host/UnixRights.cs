using System.Runtime.InteropServices;
using VmmKit.Dom0.Xen.Abi;
using static VmmKit.Dom0.Xen.Abi.SocketMessage;

namespace VmmKit.ReferenceHypervisor.Host;

/// <summary>sendmsg(2) with one SCM_RIGHTS file descriptor (unix(7)): how the machine-memory file reaches Dom0.</summary>
internal static unsafe partial class UnixRights
{
    [LibraryImport("libc", EntryPoint = "sendmsg", SetLastError = true)]
    private static partial nint SendMsg(nint socket, MsgHdr* message, int flags);

    /// <summary>Sends <paramref name="data"/> with <paramref name="fd"/> attached; false when the kernel refused it.</summary>
    public static bool TrySend(nint socket, ReadOnlySpan<byte> data, int fd)
    {
        // struct cmsghdr { size_t cmsg_len; int cmsg_level; int cmsg_type; } then the int: CMSG_LEN(4) = 20, CMSG_SPACE(4) = 24.
        byte* control = stackalloc byte[24];
        new Span<byte>(control, 24).Clear();
        *(nuint*)control = 20;
        *(int*)(control + 8) = SolSocket;
        *(int*)(control + 12) = ScmRights;
        *(int*)(control + 16) = fd;
        fixed (byte* p = data)
        {
            var iov = new IoVec { Base = p, Length = (nuint)data.Length };
            var msg = new MsgHdr { Iov = &iov, IovLength = 1, Control = control, ControlLength = 24 };
            return SendMsg(socket, &msg, 0x4000 /* MSG_NOSIGNAL */) == data.Length;
        }
    }
}
