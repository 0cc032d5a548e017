using VmmKit.Hypercall;

namespace VmmKit.ReferenceHypervisor.Hypercalls;

/// <summary>
/// <c>__HYPERVISOR_console_io(cmd, count, buffer)</c> (xen/drivers/char/console.c). Writes go to
/// the domain's console, copied in chunks like Xen's <c>guest_console_write</c>; a bad buffer is
/// -EFAULT (chunks before it have been printed, as in Xen). As there, a long write checks for
/// preemption before each chunk after the first and continues with <c>count</c> and <c>buffer</c>
/// advanced (<see cref="HypercallPreemption"/>), so one VMCALL cannot hold the host for a count of
/// up to 4 GiB. Reads take queued console input.
/// Xen's default policy allows domU writes only in debug builds; we behave as a debug build.
/// </summary>
internal static class ConsoleIoHypercall
{
    /// <summary>guest_console_write's chunk: <c>sizeof(kbuf) - 1</c>, 127 bytes (Xen 4.17).</summary>
    private const int Chunk = 127;

    /// <summary>
    /// <c>console_io(cmd, count, buffer)</c>: Xen 4.17's <c>do_console_io</c> asks <c>xsm_console_io</c> before it looks
    /// at the command, and the default policy gives a domain that is not the console domain only CONSOLEIO_write (in a
    /// debug build): an unknown command is -EPERM for a guest, -ENOSYS for domain 0. (CONSOLEIO_read stays open to a
    /// guest here, so a test can type input to it; Xen would refuse it -EPERM.)
    /// </summary>
    public static long Handle(ref HypercallCall<VirtualCpu> call) => (uint)call.Argument(0) switch
    {
        (uint)ConsoleIoCommand.Write => Write(ref call),
        (uint)ConsoleIoCommand.Read => Read(ref call),
        _ => call.Caller.Domain.IsPrivileged ? XenErrno.ENOSYS.Negated() : XenErrno.EPERM.Negated(),
    };

    /// <summary>CONSOLEIO_write: returns 0 or -EFAULT.</summary>
    public static long Write(ref HypercallCall<VirtualCpu> call)
    {
        uint count = (uint)call.Argument(1);
        ulong buffer = call.Argument(2);
        Span<byte> chunk = stackalloc byte[Chunk];
        var console = call.Caller.Domain.Console;
        bool first = true;
        while (count > 0)
        {
            if (!first && call.PreemptCheck())
                return call.CreateContinuation(HypercallNumber.ConsoleIo, [(ulong)ConsoleIoCommand.Write, count, buffer]);
            first = false;
            int n = (int)Math.Min(count, (uint)Chunk);
            if (!call.TryCopyFromGuest(buffer, chunk[..n]))
                return XenErrno.EFAULT.Negated();
            console.Write(chunk[..n]);
            buffer += (uint)n;
            count -= (uint)n;
        }

        return 0;
    }

    /// <summary>
    /// CONSOLEIO_read: copies up to count queued input bytes; returns how many. A count that is negative as an
    /// <c>int</c> is -E2BIG, so a byte count can never look like an errno (do_console_io).
    /// </summary>
    public static long Read(ref HypercallCall<VirtualCpu> call)
    {
        uint count = (uint)call.Argument(1);
        if ((int)count < 0)
            return XenErrno.E2BIG.Negated();
        ulong buffer = call.Argument(2);
        var console = call.Caller.Domain.Console;
        Span<byte> chunk = stackalloc byte[Chunk];
        long total = 0;
        while (count > 0)
        {
            int n = console.PeekInput(chunk[..(int)Math.Min(count, (uint)Chunk)]);
            if (n == 0)
                break;
            if (!call.TryCopyToGuest(buffer, chunk[..n]))
                return XenErrno.EFAULT.Negated();
            console.ConsumeInput(n);
            buffer += (uint)n;
            count -= (uint)n;
            total += n;
        }

        return total;
    }
}
