using System.Runtime.InteropServices;

/// <summary>
/// A terminal put in raw mode for the console session and restored afterwards (termios(3): tcgetattr, cfmakeraw,
/// tcsetattr). The <c>struct termios</c> is kept opaque: libc fills and reads it, so its layout is not restated here.
/// </summary>
internal sealed partial class RawTerminal : IDisposable
{
    /// <summary>Bytes reserved for a <c>struct termios</c> (60 on x86-64 glibc).</summary>
    private const int TermiosSize = 256;

    /// <summary>tcsetattr's TCSANOW.</summary>
    private const int TcsaNow = 0;

    private readonly int _fd;
    private readonly byte[] _saved;

    private RawTerminal(int fd, byte[] saved)
    {
        _fd = fd;
        _saved = saved;
    }

    /// <summary>Raw mode on <paramref name="fd"/> when it is a terminal; null (nothing to restore) when it is not.</summary>
    public static RawTerminal? TryEnter(int fd)
    {
        if (IsATty(fd) != 1)
            return null;
        var saved = new byte[TermiosSize];
        if (TcGetAttr(fd, saved) != 0)
            return null;
        var raw = (byte[])saved.Clone();
        CfMakeRaw(raw);
        return TcSetAttr(fd, TcsaNow, raw) == 0 ? new RawTerminal(fd, saved) : null;
    }

    /// <summary>Restores the settings found on entry.</summary>
    public void Dispose() => TcSetAttr(_fd, TcsaNow, _saved);

    [LibraryImport("libc", EntryPoint = "isatty")]
    private static partial int IsATty(int fd);

    [LibraryImport("libc", EntryPoint = "tcgetattr")]
    private static partial int TcGetAttr(int fd, [Out] byte[] termios);

    [LibraryImport("libc", EntryPoint = "tcsetattr")]
    private static partial int TcSetAttr(int fd, int optionalActions, byte[] termios);

    [LibraryImport("libc", EntryPoint = "cfmakeraw")]
    private static partial void CfMakeRaw(byte[] termios);
}
