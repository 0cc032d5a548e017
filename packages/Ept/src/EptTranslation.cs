namespace VmmKit.Ept;

/// <summary>A successful EPT translation of one guest-physical address.</summary>
public readonly struct EptTranslation
{
    /// <summary>Creates a translation.</summary>
    /// <param name="machineAddress">The machine-physical address the guest-physical address translates to.</param>
    /// <param name="permissions">Rights granted by the walk (AND of every level).</param>
    /// <param name="memoryType">EPT memory type of the leaf.</param>
    /// <param name="ignorePat">Bit 6 of the leaf.</param>
    /// <param name="pageLevel">1 for a 4 KiB page, 2 for 2 MiB, 3 for 1 GiB.</param>
    public EptTranslation(ulong machineAddress, EptAccess permissions, EptMemoryType memoryType, bool ignorePat, int pageLevel)
    {
        MachineAddress = machineAddress;
        Permissions = permissions;
        MemoryType = memoryType;
        IgnorePat = ignorePat;
        PageLevel = pageLevel;
    }

    /// <summary>The machine-physical address, including the page offset.</summary>
    public ulong MachineAddress { get; }

    /// <summary>The 4 KiB machine frame containing <see cref="MachineAddress"/> (inside a large page, the exact 4 KiB frame).</summary>
    public MachineFrameNumber Frame => new(MachineAddress >> Page.PageShift);

    /// <summary>The rights the walk grants: the AND of bits 0, 1, 2 and 10 over every level.</summary>
    public EptAccess Permissions { get; }

    /// <summary>The leaf's EPT memory type (bits 5:3).</summary>
    public EptMemoryType MemoryType { get; }

    /// <summary>The leaf's ignore-PAT bit (bit 6).</summary>
    public bool IgnorePat { get; }

    /// <summary>Level of the leaf: 1 (PTE, 4 KiB), 2 (PDE, 2 MiB) or 3 (PDPTE, 1 GiB).</summary>
    public int PageLevel { get; }

    /// <summary>Size in bytes of the page that maps the address.</summary>
    public ulong PageSize => 1UL << (Page.PageShift + (9 * (PageLevel - 1)));
}
