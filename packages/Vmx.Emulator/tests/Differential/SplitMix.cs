namespace VmmKit.Vmx.Emulator.Tests.Differential;

/// <summary>
/// SplitMix64, a small fast seeded generator: the differential tester draws tens of millions of
/// values per run and System.Random's seeded (compatibility) algorithm is an order of magnitude slower.
/// </summary>
internal sealed class SplitMix
{
    private ulong _state;

    public SplitMix(int seed) => _state = 0x5851F42D4C957F2DUL * (ulong)(uint)seed + 0x14057B7EF767814FUL;

    public ulong NextUInt64()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>A non-negative int (0 .. int.MaxValue - 1).</summary>
    public int Next() => (int)(NextUInt64() >> 33);

    /// <summary>An int in [0, max).</summary>
    public int Next(int max) => max <= 0 ? 0 : (int)((NextUInt64() >> 32) * (ulong)max >> 32);

    /// <summary>An int in [min, max).</summary>
    public int Next(int min, int max) => min + Next(max - min);

    public long NextInt64() => (long)(NextUInt64() >> 1);

    /// <summary>A long in [min, max).</summary>
    public long NextInt64(long min, long max) => min + (long)(NextUInt64() % (ulong)(max - min));

    /// <summary>A seed for a second, independent stream, without advancing this one.</summary>
    public ulong NextUInt64Peek() => new SplitMix(0) { _state = _state ^ 0x2545F4914F6CDD1DUL }.NextUInt64();

    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));
}
