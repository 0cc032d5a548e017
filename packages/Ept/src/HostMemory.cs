using System.Runtime.InteropServices;

namespace VmmKit.Ept;

/// <summary>
/// The libc calls behind <see cref="MachineMemory"/>: one anonymous, private, unreserved mapping
/// (mmap(2) with MAP_NORESERVE, so untouched frames cost no host RAM), and madvise(MADV_DONTNEED)
/// to hand freed runs back to the host, after which they read as zero. The shared variant backs the same kind of
/// range with a Linux memory file (memfd_create(2) mapped MAP_SHARED), so another process given the file descriptor
/// maps the very same frames; freed runs of it are punched out with MADV_REMOVE.
/// </summary>
internal static unsafe partial class HostMemory
{
    private const int ProtRead = 0x1;
    private const int ProtWrite = 0x2;
    private const int MapPrivate = 0x02;
    private const int LinuxMapAnonymous = 0x20;
    private const int LinuxMapNoReserve = 0x4000;
    private const int MacMapAnonymous = 0x1000;
    private const int MapShared = 0x01;
    private const int MadvDontNeed = 4;   // Linux <asm-generic/mman-common.h>
    private const int MadvRemove = 9;     // Linux <asm-generic/mman-common.h>: frees a shared range's backing store
    private const uint MfdCloexec = 1;    // Linux <linux/memfd.h>
    private static readonly nint MapFailed = -1;

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    private static partial nint Mmap(nint address, nuint length, int protection, int flags, int fd, nint offset);

    [LibraryImport("libc", EntryPoint = "memfd_create", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int MemfdCreate(string name, uint flags);

    [LibraryImport("libc", EntryPoint = "ftruncate", SetLastError = true)]
    private static partial int Ftruncate(int fd, long length);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
    private static partial int Munmap(nint address, nuint length);

    [LibraryImport("libc", EntryPoint = "madvise", SetLastError = true)]
    private static partial int Madvise(nint address, nuint length, int advice);

    /// <summary>Reserves <paramref name="length"/> bytes of zero-filled, lazily committed memory.</summary>
    public static byte* Reserve(ulong length)
    {
        int flags;
        if (OperatingSystem.IsLinux())
        {
            flags = MapPrivate | LinuxMapAnonymous | LinuxMapNoReserve;
        }
        else if (OperatingSystem.IsMacOS() || OperatingSystem.IsFreeBSD())
        {
            flags = MapPrivate | MacMapAnonymous;
        }
        else
        {
            throw new PlatformNotSupportedException("MachineMemory needs mmap(2): Linux, macOS or FreeBSD.");
        }

        nint p = Mmap(0, (nuint)length, ProtRead | ProtWrite, flags, -1, 0);
        if (p == MapFailed || p == 0)
        {
            throw new MachineMemoryExhaustedException($"mmap of {length} bytes failed (errno {Marshal.GetLastPInvokeError()}).");
        }

        return (byte*)p;
    }

    /// <summary>
    /// Creates a memory file of <paramref name="length"/> bytes (memfd_create(2), close-on-exec, sparse: untouched pages cost
    /// no host RAM) and maps it shared; the caller owns <paramref name="fd"/> and closes it with <see cref="CloseFile"/>.
    /// </summary>
    public static byte* ReserveShared(ulong length, out int fd)
    {
        if (!OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException("Shared machine memory needs memfd_create(2): Linux.");
        }

        fd = MemfdCreate("vmmkit-machine-memory", MfdCloexec);
        if (fd < 0)
        {
            throw new MachineMemoryExhaustedException($"memfd_create failed (errno {Marshal.GetLastPInvokeError()}).");
        }

        nint p = Ftruncate(fd, (long)length) == 0 ? Mmap(0, (nuint)length, ProtRead | ProtWrite, MapShared, fd, 0) : MapFailed;
        if (p == MapFailed || p == 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            _ = Close(fd);
            fd = -1;
            throw new MachineMemoryExhaustedException($"sizing or mapping a {length}-byte memory file failed (errno {errno}).");
        }

        return (byte*)p;
    }

    /// <summary>Closes a memory file made by <see cref="ReserveShared"/>.</summary>
    public static void CloseFile(int fd) => _ = Close(fd);

    /// <summary>Releases a mapping made by <see cref="Reserve"/>.</summary>
    public static void Release(byte* start, ulong length) => _ = Munmap((nint)start, (nuint)length);

    /// <summary>Drops the host pages behind a page-aligned range; it reads as zero afterwards (private anonymous mapping).</summary>
    /// <remarks>Only Linux guarantees zero-fill after MADV_DONTNEED; elsewhere this returns false and the caller clears.</remarks>
    public static bool Discard(byte* start, ulong length, bool shared = false) =>
        OperatingSystem.IsLinux() && Madvise((nint)start, (nuint)length, shared ? MadvRemove : MadvDontNeed) == 0;
}
