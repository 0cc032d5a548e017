using VmmKit.Ept;

namespace VmmKit.Ept.Tests;

/// <summary>
/// A hand-built 4-level EPT for guest-physical address 0: one PML4, PDPT, PD and PT linked through entry 0,
/// so a test can put any raw 64-bit value at any level and see what the walker makes of it.
/// </summary>
internal sealed unsafe class RawEpt : IDisposable
{
    public const ulong TableRights = 0x7; // R/W/X in a non-leaf entry

    public RawEpt(ulong memorySize = 64UL << 20)
    {
        Memory = new MachineMemory(memorySize);
        for (int level = 4; level >= 1; level--)
        {
            Tables[level] = Memory.AllocateFrame(FrameOwner.Hypervisor);
        }

        Data = Memory.AllocateContiguous(FrameOwner.Hypervisor, 512, 512);
        for (int level = 4; level >= 2; level--)
        {
            Set(level, Tables[level - 1].Address | TableRights);
        }

        Set(1, Data.Address | 0x7 | (6 << 3));
    }

    public MachineMemory Memory { get; }

    public MachineFrameNumber[] Tables { get; } = new MachineFrameNumber[5];

    /// <summary>A 2 MiB-aligned run of 512 data frames.</summary>
    public MachineFrameNumber Data { get; }

    public void Set(int level, ulong value, int index = 0) => ((ulong*)Memory.GetFramePointer(Tables[level]))[index] = value;

    public ulong Get(int level, int index = 0) => ((ulong*)Memory.GetFramePointer(Tables[level]))[index];

    public EptPointer Pointer(bool accessedDirty = false) => EptPointer.Create(Tables[4], accessedDirty);

    public EptTranslationStatus Translate(ulong gpa, EptAccess access, out EptTranslation t, out EptViolationQualification q, bool accessedDirty = false, EptViolationQualification linear = default, bool mbec = false) =>
        EptWalker.Translate(Memory, Pointer(accessedDirty), new GuestPhysicalAddress(gpa), access, linear, mbec, out t, out q);

    public void Dispose() => Memory.Dispose();
}
