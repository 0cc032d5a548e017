namespace VmmKit.Vmx.Emulator.Engine;

/// <summary>Kind of memory access (matches VmmKit.Ept's EptAccess bits).</summary>
[Flags]
internal enum MemoryAccess
{
    /// <summary>Data read.</summary>
    Read = 1,
    /// <summary>Data write.</summary>
    Write = 2,
    /// <summary>Instruction fetch.</summary>
    Execute = 4,
}

/// <summary>
/// Where guest-physical pages live: the engine's only view of memory below the software TLB.
/// Implemented over VmmKit.Ept's GuestPhysicalMemory (EPT walk) or, for tests and benches, over a
/// plain native buffer.
/// </summary>
internal unsafe interface IGuestPageSource
{
    /// <summary>
    /// The host address of the 4 KiB guest-physical page holding <paramref name="gpa"/>, or null when
    /// the access is not allowed; <paramref name="violation"/> then carries the EPT-violation exit
    /// qualification (SDM Vol. 3C §28.3.3.2, table 28-7) or 0 for an EPT misconfiguration.
    /// </summary>
    byte* GetHostPage(ulong gpa, MemoryAccess access, out ulong violation, out bool misconfiguration);
}

/// <summary>Guest-physical RAM [0, size) in one native buffer: the simplest page source.</summary>
internal sealed unsafe class NativeRamPageSource : IGuestPageSource, IDisposable
{
    private byte* _ram;

    /// <summary>Allocates <paramref name="size"/> zeroed bytes (rounded up to 4 KiB).</summary>
    public NativeRamPageSource(ulong size)
    {
        Size = (size + 0xFFF) & ~0xFFFUL;
        _ram = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)Size, 4096);
        System.Runtime.InteropServices.NativeMemory.Clear(_ram, (nuint)Size);
    }

    /// <summary>Bytes of RAM.</summary>
    public ulong Size { get; }

    /// <summary>Host address of guest-physical 0.</summary>
    public byte* Base => _ram;

    /// <summary>The RAM as a span (size must fit an int).</summary>
    public Span<byte> Span => new(_ram, checked((int)Size));

    /// <inheritdoc/>
    public byte* GetHostPage(ulong gpa, MemoryAccess access, out ulong violation, out bool misconfiguration)
    {
        misconfiguration = false;
        if (gpa >= Size)
        {
            // SDM table 28-7: bits 0-2 = access kind; bits 3-5 = permissions (none: not present).
            violation = (ulong)access & 7;
            return null;
        }
        violation = 0;
        return _ram + (gpa & ~0xFFFUL);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_ram != null)
        {
            System.Runtime.InteropServices.NativeMemory.AlignedFree(_ram);
            _ram = null;
        }
    }
}
