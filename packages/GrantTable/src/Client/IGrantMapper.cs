namespace VmmKit.GrantTable;

/// <summary>
/// Using foreign grants, as a backend does (libxengnttab, Linux's <c>/dev/xen/gntdev</c>): map a grant into my
/// address space, unmap it, and copy by grant without mapping.
/// </summary>
public interface IGrantMapper
{
    /// <summary>Maps grant <paramref name="grantRef"/> of domain <paramref name="domainId"/>.</summary>
    /// <param name="domainId">The granter.</param>
    /// <param name="grantRef">Its grant reference.</param>
    /// <param name="readOnly">Map read-only.</param>
    /// <param name="mapping">The mapping on success.</param>
    /// <returns>The hypervisor's status (<see cref="GrantStatus.Okay"/> on success).</returns>
    GrantStatus TryMap(ushort domainId, uint grantRef, bool readOnly, out GrantMapping mapping);

    /// <summary>The bytes of a mapped frame.</summary>
    /// <param name="mapping">A live mapping.</param>
    /// <returns>The 4 KiB page; write only through a writable mapping.</returns>
    Span<byte> GetPage(in GrantMapping mapping);

    /// <summary>Unmaps a mapping.</summary>
    /// <param name="mapping">A live mapping made by this mapper.</param>
    /// <returns>
    /// The hypervisor's status. A mapping this mapper does not hold (another mapper's, or one it unmapped already) is
    /// refused and changes nothing: <see cref="GrantStatus.GeneralError"/> (gntdev: <c>-ENOENT</c>), or the hypervisor's
    /// error when its place was mapped again since.
    /// </returns>
    GrantStatus Unmap(in GrantMapping mapping);

    /// <summary>Copies by grant (<c>GNTTABOP_copy</c>, <c>xengnttab_grant_copy</c>); each operation's <c>Status</c> is set.</summary>
    /// <param name="operations">The copy operations.</param>
    void Copy(Span<GnttabCopy> operations);
}
