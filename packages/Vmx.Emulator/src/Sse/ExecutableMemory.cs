using System.Runtime.InteropServices;

namespace VmmKit.Vmx.Emulator.Sse;

/// <summary>
/// A small block of host executable memory for code generated once at start-up (the SIMD floating-point
/// thunks): mapped read-write, filled, then switched to read-execute (never writable and executable at once).
/// No Reflection.Emit, so it works under NativeAOT.
/// </summary>
internal static unsafe partial class ExecutableMemory
{
    private const int ProtRead = 1, ProtWrite = 2, ProtExec = 4;
    private const int MapPrivate = 0x02;

    /// <summary>Copies <paramref name="code"/> into fresh executable memory; null when the host refuses.</summary>
    public static byte* Create(ReadOnlySpan<byte> code)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS() && !OperatingSystem.IsFreeBSD())
            return null;
        nuint size = (nuint)((code.Length + 0xFFF) & ~0xFFF);
        int mapAnonymous = OperatingSystem.IsLinux() ? 0x20 : 0x1000;
        nint p = Mmap(0, size, ProtRead | ProtWrite, MapPrivate | mapAnonymous, -1, 0);
        if (p == -1 || p == 0)
            return null;
        code.CopyTo(new Span<byte>((void*)p, code.Length));
        if (Mprotect(p, size, ProtRead | ProtExec) != 0)
        {
            Munmap(p, size);
            return null;
        }
        return (byte*)p;
    }

    [LibraryImport("libc", EntryPoint = "mmap")]
    private static partial nint Mmap(nint address, nuint length, int protection, int flags, int fd, nint offset);

    [LibraryImport("libc", EntryPoint = "mprotect")]
    private static partial int Mprotect(nint address, nuint length, int protection);

    [LibraryImport("libc", EntryPoint = "munmap")]
    private static partial int Munmap(nint address, nuint length);
}
