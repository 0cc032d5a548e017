namespace VmmKit.Ept;

/// <summary>
/// The processor state that selects and controls guest paging (SDM Vol. 3A §4.1): CR0 (PG, WP), CR3 (the root
/// table), CR4 (PSE, PAE, SMEP, SMAP), IA32_EFER (LMA, NXE) and RFLAGS (AC, for SMAP). A VMM reads them from the
/// guest-state area of the VMCS (<c>Vmcs.GuestPagingRegisters</c> in VmmKit.Vmx).
/// </summary>
/// <param name="cr0">Guest CR0.</param>
/// <param name="cr3">Guest CR3.</param>
/// <param name="cr4">Guest CR4.</param>
/// <param name="efer">Guest IA32_EFER (LMA selects 4-level paging).</param>
/// <param name="rflags">Guest RFLAGS (AC lifts SMAP for explicit supervisor accesses).</param>
public readonly struct GuestPagingRegisters(ulong cr0, ulong cr3, ulong cr4, ulong efer, ulong rflags)
{
    /// <summary>Guest CR0.</summary>
    public ulong Cr0 { get; } = cr0;

    /// <summary>Guest CR3.</summary>
    public ulong Cr3 { get; } = cr3;

    /// <summary>Guest CR4.</summary>
    public ulong Cr4 { get; } = cr4;

    /// <summary>Guest IA32_EFER.</summary>
    public ulong Efer { get; } = efer;

    /// <summary>Guest RFLAGS.</summary>
    public ulong Rflags { get; } = rflags;

    /// <summary>CR0.PG (bit 31): paging is on.</summary>
    public bool PagingEnabled => (Cr0 & (1UL << 31)) != 0;

    /// <inheritdoc/>
    public override string ToString() => $"CR0={Cr0:x} CR3={Cr3:x} CR4={Cr4:x} EFER={Efer:x} RFLAGS={Rflags:x}";
}
