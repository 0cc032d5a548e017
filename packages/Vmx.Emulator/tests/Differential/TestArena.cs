namespace VmmKit.Vmx.Emulator.Tests.Differential;

/// <summary>
/// A fixed-address region below 2 GiB that holds, natively, the generated code, the call stub, the
/// scratch data and the scratch stack. The emulator maps the same guest-physical addresses
/// (paging off, linear == guest-physical), so every pointer value a sequence computes is the same
/// on both sides and registers can be compared bit for bit.
/// </summary>
internal sealed unsafe class TestArena : IDisposable
{
    /// <summary>Offset of the generated instruction sequence (two pages).</summary>
    public const ulong CodeOffset = 0x0000;
    /// <summary>Maximum size of a generated sequence, including its terminator.</summary>
    public const int CodeCapacity = 0x2000;
    /// <summary>Offset of the native call stub and its context block.</summary>
    public const ulong StubOffset = 0x2000;
    /// <summary>Offset of the native context block inside the stub page.</summary>
    public const ulong ContextOffset = 0x2800;
    /// <summary>Offset of the scratch data area (four pages, compared after every case).</summary>
    public const ulong ScratchOffset = 0x10000;
    /// <summary>Size of the scratch data area.</summary>
    public const int ScratchSize = 0x4000;
    /// <summary>Offset of the compared part of the scratch stack (two pages). Below it lie 56 KiB of
    /// uncompared slack for signal frames the host kernel may push while the sequence runs.</summary>
    public const ulong StackOffset = 0x2E000;
    /// <summary>Size of the compared stack area.</summary>
    public const int StackSize = 0x2000;
    /// <summary>Initial RSP, relative to the base: the middle of the compared stack area.</summary>
    public const ulong InitialRspOffset = 0x2F000;
    /// <summary>The scratch base register's value, relative to the base (one page into the scratch area, so
    /// negative displacements stay inside it).</summary>
    public const ulong ScratchBaseOffset = 0x11000;
    /// <summary>Total size of the mapping.</summary>
    public const int Size = 0x30000;

    /// <summary>Base address of the region (also the guest-physical base in the emulator).</summary>
    public ulong Base { get; }

    public TestArena()
    {
        for (ulong candidate = 0x20_0000; candidate < 0x7000_0000; candidate += 0x10_0000)
        {
            nint p = Libc.Mmap((nint)candidate, Size, Libc.ProtRead | Libc.ProtWrite | Libc.ProtExec,
                Libc.MapPrivate | Libc.MapAnonymous | Libc.MapFixedNoReplace, -1, 0);
            if (p == (nint)candidate)
            {
                Base = candidate;
                return;
            }
            if (p != -1)
                Libc.Munmap(p, Size); // An old kernel ignored the NOREPLACE flag and moved the mapping.
        }
        throw new InvalidOperationException("no free fixed address below 2 GiB for the differential test arena");
    }

    public byte* Pointer(ulong offset) => (byte*)(Base + offset);

    public Span<byte> Span(ulong offset, int length) => new(Pointer(offset), length);

    public void Dispose()
    {
        if (Base != 0)
            Libc.Munmap((nint)Base, Size);
    }
}
