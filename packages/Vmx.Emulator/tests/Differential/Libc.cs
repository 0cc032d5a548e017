using System.Runtime.InteropServices;

namespace VmmKit.Vmx.Emulator.Tests.Differential;

/// <summary>The few libc calls the native side of the differential tester needs (mmap(2), munmap(2)).</summary>
internal static unsafe partial class Libc
{
    public const int ProtRead = 1;
    public const int ProtWrite = 2;
    public const int ProtExec = 4;
    public const int MapPrivate = 0x02;
    public const int MapAnonymous = 0x20;
    /// <summary>MAP_FIXED_NOREPLACE (Linux 4.17+): map exactly at the hint or fail with EEXIST.</summary>
    public const int MapFixedNoReplace = 0x100000;

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    public static partial nint Mmap(nint address, nuint length, int protection, int flags, int fd, nint offset);

    [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
    public static partial int Munmap(nint address, nuint length);
}
