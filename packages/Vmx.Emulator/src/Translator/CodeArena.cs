using System.Runtime.InteropServices;

namespace VmmKit.Vmx.Emulator.Translator;

/// <summary>
/// Host memory for translated code: one reserved region filled front to back. Pages are never writable and
/// executable at once (W^X): a page is made read-write to copy new code in, then read-execute again. When the region
/// is full the owner drops every translation and starts over (<see cref="Reset"/>). Linux, macOS, FreeBSD and Windows.
/// </summary>
internal sealed unsafe partial class CodeArena : IDisposable
{
    private const int PageSize = 4096;
    private const int ProtRead = 1, ProtWrite = 2, ProtExec = 4, MapPrivate = 0x02;
    private const uint MemCommitReserve = 0x3000, MemRelease = 0x8000, PageReadWrite = 0x04, PageExecuteRead = 0x20;

    private byte* _base;
    private readonly nuint _size;
    private nuint _used;

    private CodeArena(byte* region, nuint size)
    {
        _base = region;
        _size = size;
    }

    /// <summary>Maps <paramref name="size"/> bytes (rounded to pages); null when the host refuses.</summary>
    public static CodeArena? Create(nuint size)
    {
        size = (size + PageSize - 1) & ~(nuint)(PageSize - 1);
        byte* p;
        if (OperatingSystem.IsWindows())
        {
            p = (byte*)VirtualAlloc(0, size, MemCommitReserve, PageReadWrite);
        }
        else if (OperatingSystem.IsLinux() || OperatingSystem.IsMacOS() || OperatingSystem.IsFreeBSD())
        {
            int mapAnonymous = OperatingSystem.IsLinux() ? 0x20 : 0x1000;
            nint m = Mmap(0, size, ProtRead | ProtWrite, MapPrivate | mapAnonymous, -1, 0);
            p = m == -1 ? null : (byte*)m;
        }
        else
        {
            return null;
        }
        if (p == null) return null;
        var arena = new CodeArena(p, size);
        if (!arena.Protect(0, size, executable: true))
        {
            arena.Dispose();
            return null;
        }
        return arena;
    }

    /// <summary>Bytes still free.</summary>
    public nuint Free => _size - _used;

    /// <summary>Copies <paramref name="code"/> in (16-byte aligned) and returns its address, or null when full.</summary>
    public byte* Add(ReadOnlySpan<byte> code)
    {
        nuint start = (_used + 15) & ~(nuint)15;
        if (_base == null || start + (nuint)code.Length > _size) return null;
        nuint pageStart = start & ~(nuint)(PageSize - 1);
        nuint pageEnd = (start + (nuint)code.Length + PageSize - 1) & ~(nuint)(PageSize - 1);
        if (!Protect(pageStart, pageEnd - pageStart, executable: false)) return null;
        code.CopyTo(new Span<byte>(_base + start, code.Length));
        if (!Protect(pageStart, pageEnd - pageStart, executable: true)) return null;
        _used = start + (nuint)code.Length;
        return _base + start;
    }

    /// <summary>Forgets every piece of code (the caller has dropped every pointer into the arena).</summary>
    public void Reset() => _used = 0;

    private bool Protect(nuint offset, nuint length, bool executable)
    {
        if (OperatingSystem.IsWindows())
        {
            return VirtualProtect((nint)(_base + offset), length, executable ? PageExecuteRead : PageReadWrite, out _) != 0;
        }
        return Mprotect((nint)(_base + offset), length, executable ? ProtRead | ProtExec : ProtRead | ProtWrite) == 0;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_base == null) return;
        if (OperatingSystem.IsWindows()) VirtualFree((nint)_base, 0, MemRelease);
        else Munmap((nint)_base, _size);
        _base = null;
        GC.SuppressFinalize(this);
    }

    ~CodeArena() => Dispose();

    [LibraryImport("libc", EntryPoint = "mmap")]
    private static partial nint Mmap(nint address, nuint length, int protection, int flags, int fd, nint offset);

    [LibraryImport("libc", EntryPoint = "mprotect")]
    private static partial int Mprotect(nint address, nuint length, int protection);

    [LibraryImport("libc", EntryPoint = "munmap")]
    private static partial int Munmap(nint address, nuint length);

    [LibraryImport("kernel32", EntryPoint = "VirtualAlloc")]
    private static partial nint VirtualAlloc(nint address, nuint size, uint type, uint protect);

    [LibraryImport("kernel32", EntryPoint = "VirtualProtect")]
    private static partial int VirtualProtect(nint address, nuint size, uint protect, out uint old);

    [LibraryImport("kernel32", EntryPoint = "VirtualFree")]
    private static partial int VirtualFree(nint address, nuint size, uint type);
}
