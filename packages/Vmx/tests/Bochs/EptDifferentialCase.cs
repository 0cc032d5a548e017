namespace VmmKit.Vmx.Tests.Bochs;

/// <summary>
/// One EPT differential case: the guest makes <paramref name="Access"/> at the target of a path whose leaf is at
/// <paramref name="LeafLevel"/> (1 = 4 KiB, 2 = 2 MiB, 3 = 1 GiB), through entries <paramref name="Craft"/> made from
/// the well-formed path, with the EPTP's accessed/dirty enable set to <paramref name="AccessedDirty"/>.
/// <paramref name="AtPageEnd"/> puts the 4-byte access 2 bytes before the end of the leaf's page, so that its second
/// half falls in the next (not-present) page. A <paramref name="Paged"/> case (4 KiB leaf) runs the guest with 32-bit
/// paging whose page directory is the target page (identity 4 MiB pages, A and D set), so the path is used by the
/// guest's own page walks; its access is a load from its code page. <paramref name="GuestPdeFlags"/> are the flags of
/// that page directory's entries (default P, RW, US, A, D, PS: the guest's walk writes nothing).
/// </summary>
internal sealed record EptDifferentialCase(
    string Name, EptProbe Access, int LeafLevel, Func<EptPath, EptPath> Craft, bool AccessedDirty = false, bool AtPageEnd = false,
    bool Paged = false, uint GuestPdeFlags = 0xE7);
