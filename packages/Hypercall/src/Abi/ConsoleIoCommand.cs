namespace VmmKit.Hypercall;

/// <summary>
/// Commands of <c>__HYPERVISOR_console_io(cmd, count, buffer)</c> (<c>CONSOLEIO_*</c>, xen/xen.h):
/// the hypervisor's own console, the first output channel of a PVH guest. <c>count</c> is an
/// <c>unsigned int</c> and <c>buffer</c> a <c>XEN_GUEST_HANDLE(char)</c>, in registers.
/// </summary>
public enum ConsoleIoCommand : uint
{
    /// <summary><c>CONSOLEIO_write</c>: write <c>count</c> bytes from <c>buffer</c>; returns 0.</summary>
    Write = 0,
    /// <summary><c>CONSOLEIO_read</c>: read up to <c>count</c> bytes into <c>buffer</c>; returns the number read (privileged in Xen's default policy).</summary>
    Read = 1,
}
