namespace VmmKit.Vmx;

/// <summary>
/// The host-state area values a hypervisor programs once per VMCS (SDM Vol. 3C §25.5): where the processor
/// returns on VM exit. Used by <see cref="VmcsBuilder.SetHostState"/>.
/// </summary>
public readonly record struct VmcsHostState
{
    /// <summary>Host CR0.</summary>
    public ulong Cr0 { get; init; }
    /// <summary>Host CR3.</summary>
    public ulong Cr3 { get; init; }
    /// <summary>Host CR4.</summary>
    public ulong Cr4 { get; init; }
    /// <summary>Host CS selector (RPL and TI must be 0, not null).</summary>
    public ushort CodeSelector { get; init; }
    /// <summary>Host SS, DS, ES, FS and GS selector.</summary>
    public ushort DataSelector { get; init; }
    /// <summary>Host TR selector (RPL and TI must be 0, not null).</summary>
    public ushort TaskSelector { get; init; }
    /// <summary>Host TR base.</summary>
    public ulong TrBase { get; init; }
    /// <summary>Host GDTR base.</summary>
    public ulong GdtrBase { get; init; }
    /// <summary>Host IDTR base.</summary>
    public ulong IdtrBase { get; init; }
    /// <summary>Host RSP after VM exit.</summary>
    public ulong Rsp { get; init; }
    /// <summary>Host RIP after VM exit (the exit handler).</summary>
    public ulong Rip { get; init; }
    /// <summary>True for a 64-bit host (sets the "host address-space size" VM-exit control).</summary>
    public bool Is64Bit { get; init; }
}
