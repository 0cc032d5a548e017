namespace VmmKit.Boot;

/// <summary>
/// One PT_LOAD program header, already checked against the file: <see cref="FileSize"/> bytes at
/// <see cref="FileOffset"/> go to guest-physical <see cref="PhysicalAddress"/>, the rest up to
/// <see cref="MemorySize"/> is zero (ELF gABI, "Program Header").
/// </summary>
/// <param name="PhysicalAddress">p_paddr: PVH loads segments at their physical address.</param>
/// <param name="FileOffset">p_offset.</param>
/// <param name="FileSize">p_filesz (at most <paramref name="MemorySize"/>).</param>
/// <param name="MemorySize">p_memsz.</param>
public readonly record struct ElfLoadSegment(ulong PhysicalAddress, ulong FileOffset, ulong FileSize, ulong MemorySize)
{
    /// <summary>First guest-physical address after the segment (no overflow: checked by the parser).</summary>
    public ulong End => PhysicalAddress + MemorySize;
}
