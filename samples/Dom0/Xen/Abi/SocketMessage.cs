using System.Runtime.InteropServices;

namespace VmmKit.Dom0.Xen.Abi;

/// <summary>
/// The socket structures both ends of the Dom0 channel hand to sendmsg(2)/recvmsg(2) to pass the machine-memory file
/// with SCM_RIGHTS (unix(7); x86-64 glibc layouts of <c>struct iovec</c> and <c>struct msghdr</c>). Linked into the
/// hypervisor as <see cref="ToolsAbi"/> is (docs/articles/dom0-abi.md).
/// </summary>
internal static unsafe class SocketMessage
{
    /// <summary>SOL_SOCKET and SCM_RIGHTS (Linux &lt;asm-generic/socket.h&gt;, &lt;linux/socket.h&gt;).</summary>
    public const int SolSocket = 1, ScmRights = 1;

    /// <summary><c>struct iovec</c>.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct IoVec
    {
        public void* Base;
        public nuint Length;
    }

    /// <summary><c>struct msghdr</c>.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct MsgHdr
    {
        public void* Name;
        public uint NameLength;
        public IoVec* Iov;
        public nuint IovLength;
        public void* Control;
        public nuint ControlLength;
        public int Flags;
    }
}
