using VmmKit.Hypercall;

namespace VmmKit.Hypercall.Tests;

/// <summary>Guest memory for tests: one flat range [Base, Base + size) with identity translation; anything else faults.</summary>
internal sealed class FlatGuestMemory(ulong baseAddress, int size) : IGuestVirtualMemory
{
    public readonly byte[] Bytes = new byte[size];
    public ulong Base { get; } = baseAddress;
    public int Reads;
    public int Writes;

    public bool TryRead(ulong gva, Span<byte> destination)
    {
        Reads++;
        if (!InRange(gva, destination.Length))
            return false;
        Bytes.AsSpan((int)(gva - Base), destination.Length).CopyTo(destination);
        return true;
    }

    public bool TryWrite(ulong gva, ReadOnlySpan<byte> source)
    {
        Writes++;
        if (!InRange(gva, source.Length))
            return false;
        source.CopyTo(Bytes.AsSpan((int)(gva - Base)));
        return true;
    }

    private bool InRange(ulong gva, int length) =>
        gva >= Base && gva - Base <= (ulong)Bytes.Length && (ulong)length <= (ulong)Bytes.Length - (gva - Base);

    public Span<byte> At(ulong gva, int length) => Bytes.AsSpan((int)(gva - Base), length);
}

/// <summary>The caller type the tests hand to the dispatcher.</summary>
internal sealed class TestVcpu(int domainId, bool privileged = false)
{
    public int DomainId { get; } = domainId;
    public bool Privileged { get; } = privileged;
    public List<string> Log { get; } = [];
    public int Work;
}
