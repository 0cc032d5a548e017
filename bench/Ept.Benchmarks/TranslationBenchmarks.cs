using BenchmarkDotNet.Attributes;
using VmmKit.Ept;

namespace VmmKit.Ept.Benchmarks;

/// <summary>
/// Guest-physical translations per second: a full 4-level walk of real tables (<see cref="EptWalker"/>) and the
/// cached fast path of <see cref="GuestPhysicalMemory"/>, over 4 KiB pages and over 2 MiB pages.
/// Each invocation translates <see cref="Operations"/> addresses spread over 256 pages (inside the cache).
/// </summary>
[MemoryDiagnoser]
public unsafe class TranslationBenchmarks
{
    private const int Operations = 4096;
    private const ulong Pages = 256;
    private static readonly FrameOwner Dom = new(1);

    private MachineMemory _memory = null!;
    private EptTables _ept = null!;
    private GuestPhysicalMemory _guest = null!;
    private GuestPhysicalAddress[] _addresses = null!;

    /// <summary>Page size of the mapping.</summary>
    [Params("4K", "2M")]
    public string Layout { get; set; } = "4K";

    [GlobalSetup]
    public void Setup()
    {
        _memory = new MachineMemory(1UL << 30);
        _ept = new EptTables(_memory, Dom);
        MachineFrameNumber ram = _memory.AllocateContiguous(Dom, 1024, 512);
        // 4K: shift the machine frames by one so no 2 MiB page can be used.
        ulong frames = Layout == "4K" ? Pages : 1024;
        _ept.Map(new GuestPhysicalAddress(0), Layout == "4K" ? ram + 1 : ram, frames, EptAccess.ReadWriteExecute);
        _guest = new GuestPhysicalMemory(_memory, _ept.Pointer);
        var random = new Random(42);
        _addresses = new GuestPhysicalAddress[Operations];
        for (int i = 0; i < Operations; i++)
        {
            _addresses[i] = new GuestPhysicalAddress(((ulong)random.Next((int)Pages) << 12) | (uint)random.Next(4096 - 8));
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _ept.Dispose();
        _memory.Dispose();
    }

    [Benchmark(OperationsPerInvoke = Operations, Description = "full walk (EptWalker)")]
    public ulong FullWalk()
    {
        ulong sum = 0;
        EptPointer eptp = _ept.Pointer;
        foreach (GuestPhysicalAddress gpa in _addresses)
        {
            EptWalker.Translate(_memory, eptp, gpa, EptAccess.Read, default, out EptTranslation t, out _);
            sum += t.MachineAddress;
        }

        return sum;
    }

    [Benchmark(OperationsPerInvoke = Operations, Description = "cached (TryGetHostPage)")]
    public ulong Cached()
    {
        ulong sum = 0;
        foreach (GuestPhysicalAddress gpa in _addresses)
        {
            _guest.TryGetHostPage(gpa, EptAccess.Read, out byte* page, out EptViolationQualification _);
            sum += (ulong)page;
        }

        return sum;
    }

    [Benchmark(OperationsPerInvoke = Operations, Description = "cached 8-byte read (TryRead<ulong>)")]
    public ulong CachedRead()
    {
        ulong sum = 0;
        foreach (GuestPhysicalAddress gpa in _addresses)
        {
            _guest.TryRead(gpa, out ulong value);
            sum += value;
        }

        return sum;
    }
}
