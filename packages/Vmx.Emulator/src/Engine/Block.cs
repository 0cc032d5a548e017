namespace VmmKit.Vmx.Emulator.Engine;

/// <summary>
/// A pre-decoded block: straight-line instructions starting at one guest address, ending at the
/// first instruction that branches, can exit or change mode, at a page end, or after
/// <see cref="BlockDecoder.MaxInstructions"/>. The instruction array is pinned so handlers get stable
/// <see cref="Instr"/> pointers.
/// </summary>
internal sealed unsafe partial class Block
{
    /// <summary>Pinned instruction array (length may exceed <see cref="Count"/>).</summary>
    public readonly Instr[] Instrs;
    /// <summary>Address of the first instruction.</summary>
    public readonly Instr* First;
    /// <summary>Number of instructions.</summary>
    public readonly int Count;
    /// <summary>Linear RIP of the first instruction.</summary>
    public readonly ulong LinearIp;
    /// <summary>Guest-physical address of the first instruction.</summary>
    public readonly ulong PhysicalIp;
    /// <summary>Bitness the block was decoded for.</summary>
    public readonly int Bitness;
    /// <summary>Guest-physical page of the last byte (differs from the first page when an instruction crosses).</summary>
    public readonly ulong LastPhysicalPage;
    /// <summary>Copy of the code bytes, to revalidate the block after memory changed behind the engine's back.</summary>
    public readonly byte[] Bytes;
    /// <summary>Run epoch in which the block was last checked against memory.</summary>
    public uint Epoch;
    /// <summary>False once a write to its frame invalidated it.</summary>
    public bool Valid = true;

    public Block(Instr[] instrs, int count, ulong linearIp, ulong physicalIp, int bitness, ulong lastPhysicalPage, byte[] bytes, uint epoch)
    {
        Instrs = instrs;
        fixed (Instr* p = instrs)
        {
            // The array comes from the pinned object heap (GC.AllocateArray(pinned: true)).
            First = p;
        }
        Count = count;
        LinearIp = linearIp;
        PhysicalIp = physicalIp;
        Bitness = bitness;
        LastPhysicalPage = lastPhysicalPage;
        Bytes = bytes;
        Epoch = epoch;
    }

    /// <summary>Block-cache key: guest-physical address and mode.</summary>
    public static ulong Key(ulong physicalIp, int bitness) => (physicalIp << 2) | (uint)(bitness >> 5);
}
