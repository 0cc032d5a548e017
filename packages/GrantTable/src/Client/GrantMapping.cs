namespace VmmKit.GrantTable;

/// <summary>A foreign grant mapped by <see cref="IGrantMapper.TryMap"/>.</summary>
/// <param name="DomainId">The granting domain.</param>
/// <param name="GrantRef">The grant reference.</param>
/// <param name="Handle">The hypervisor's maptrack handle.</param>
/// <param name="Address">Where the frame appears in my address space (a guest-physical address for an in-process mapper).</param>
/// <param name="ReadOnly">True for a read-only mapping.</param>
public readonly record struct GrantMapping(ushort DomainId, uint GrantRef, uint Handle, ulong Address, bool ReadOnly);
