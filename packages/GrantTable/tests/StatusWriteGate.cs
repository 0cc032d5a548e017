using VmmKit.Hypercall;

namespace VmmKit.GrantTable.Tests;

/// <summary>
/// A domain's memory as a hypercall sees it, whose first write (a <c>GNTTABOP_copy</c> status, made within the copy's
/// hold of its copy words) signals <paramref name="inHold"/> and waits until <paramref name="letGo"/> is set. No host
/// pointers, so every access comes here.
/// </summary>
internal sealed class StatusWriteGate(IGuestVirtualMemory inner, ManualResetEventSlim inHold, ManualResetEventSlim letGo) : IGuestVirtualMemory
{
    public bool TryRead(ulong gva, Span<byte> destination) => inner.TryRead(gva, destination);

    public bool TryWrite(ulong gva, ReadOnlySpan<byte> source)
    {
        inHold.Set();
        letGo.Wait();
        return inner.TryWrite(gva, source);
    }
}
