using System.Runtime.InteropServices;

namespace VmmKit.EventChannel.Tests;

/// <summary>
/// A guest's RAM as host pages, with Xen-like page references: a frame the guest removes
/// (<see cref="Remove"/>) is freed only when no mapping holds it, so a test can see that the
/// package keeps the frames it maps alive and drops every reference it takes.
/// </summary>
internal sealed unsafe class TestGuestFrames : IGuestFrameMapper, IDisposable
{
    private readonly byte*[] _pages;
    private readonly int[] _refs;
    private readonly bool[] _removed;
    private readonly Lock _lock = new();

    public TestGuestFrames(int frames)
    {
        _pages = new byte*[frames];
        _refs = new int[frames];
        _removed = new bool[frames];
        for (int i = 0; i < frames; i++)
        {
            _pages[i] = (byte*)NativeMemory.AlignedAlloc(4096, 4096);
            NativeMemory.Clear(_pages[i], 4096);
        }
    }

    public int Frames => _pages.Length;
    public byte* Page(ulong gfn) => _pages[gfn];
    public int References(ulong gfn) { lock (_lock) return _refs[gfn]; }
    public int TotalReferences { get { lock (_lock) return _refs.Sum(); } }
    public bool IsFreed(ulong gfn) { lock (_lock) return _pages[gfn] == null; }

    public bool TryMap(ulong gfn, out byte* page)
    {
        lock (_lock)
        {
            page = null;
            if (gfn >= (ulong)_pages.Length || _removed[gfn] || _pages[gfn] == null)
                return false;
            _refs[gfn]++;
            page = _pages[gfn];
            return true;
        }
    }

    public void Unmap(ulong gfn, byte* page)
    {
        lock (_lock)
        {
            if (gfn >= (ulong)_pages.Length || _pages[gfn] != page || _refs[gfn] == 0)
                throw new InvalidOperationException($"unbalanced unmap of gfn {gfn}");
            if (--_refs[gfn] == 0 && _removed[gfn])
                Free(gfn);
        }
    }

    /// <summary>The guest gives the frame back (XENMEM_decrease_reservation): freed once unreferenced.</summary>
    public void Remove(ulong gfn)
    {
        lock (_lock)
        {
            _removed[gfn] = true;
            if (_refs[gfn] == 0)
                Free(gfn);
        }
    }

    private void Free(ulong gfn)
    {
        // Poison first so a use after free would be visible, then release.
        NativeMemory.Fill(_pages[gfn], 4096, 0xCC);
        NativeMemory.AlignedFree(_pages[gfn]);
        _pages[gfn] = null;
    }

    public void Dispose()
    {
        for (int i = 0; i < _pages.Length; i++)
        {
            if (_pages[i] != null)
                NativeMemory.AlignedFree(_pages[i]);
            _pages[i] = null;
        }
    }
}

/// <summary>Counts upcalls per vCPU (thread-safe).</summary>
internal sealed class CountingUpcall : IEventChannelUpcall
{
    private readonly long[] _counts = new long[64];
    public void RaiseUpcall(EventChannelDomain domain, int vcpu) => Interlocked.Increment(ref _counts[vcpu]);
    public long Count(int vcpu) => Volatile.Read(ref _counts[vcpu]);
    public long Total => _counts.Sum();
}
