namespace VmmKit.Vmx.Tests.Bochs;

/// <summary>
/// The four EPT entries on the path of an EPT differential case's target (PML4E 0, PDPTE 1, PDE 1, PTE 5); a case
/// starts from the well-formed path for its leaf size and changes what it tests. Entries below a large-page leaf are
/// not used.
/// </summary>
internal readonly record struct EptPath(ulong Pml4e, ulong Pdpte, ulong Pde, ulong Pte)
{
    /// <summary>The entry at <paramref name="level"/> (4 = PML4E .. 1 = PTE).</summary>
    public ulong this[int level] => level switch { 4 => Pml4e, 3 => Pdpte, 2 => Pde, _ => Pte };

    /// <summary>This path with the entry at <paramref name="level"/> replaced by <paramref name="entry"/>.</summary>
    public EptPath With(int level, ulong entry) => level switch
    {
        4 => this with { Pml4e = entry },
        3 => this with { Pdpte = entry },
        2 => this with { Pde = entry },
        _ => this with { Pte = entry },
    };

    /// <summary>This path with <paramref name="set"/> set and <paramref name="clear"/> cleared in the entry at <paramref name="level"/>.</summary>
    public EptPath Edit(int level, ulong set, ulong clear = 0) => With(level, (this[level] & ~clear) | set);
}
