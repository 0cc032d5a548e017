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

    /// <summary>The bytes of a frame mapped writable, to read and write.</summary>
    /// <param name="mapping">A live writable mapping made by this mapper.</param>
    /// <returns>
    /// The 4 KiB page, valid until the mapping goes (<see cref="Unmap"/>, or the mapper's domain releasing its
    /// mappings or dying): it is the granter's frame itself, which may then be freed and given to another domain. Do not
    /// use it after that; a span cannot be revoked as gntdev's <c>munmap</c> revokes the pages of a mapping.
    /// </returns>
    /// <exception cref="ArgumentException">
    /// <paramref name="mapping"/> is not a live mapping of this mapper (another mapper's, or one unmapped already).
    /// </exception>
    /// <exception cref="InvalidOperationException">
    /// The mapper made <paramref name="mapping"/> read-only, whatever its <see cref="GrantMapping.ReadOnly"/> says (as
    /// gntdev puts a read-only grant only into a <c>PROT_READ</c> mapping): use <see cref="GetReadOnlyPage"/>.
    /// </exception>
    Span<byte> GetPage(in GrantMapping mapping);

    /// <summary>The bytes of a mapped frame, to read: any live mapping, read-only or writable.</summary>
    /// <param name="mapping">A live mapping made by this mapper.</param>
    /// <returns>The 4 KiB page, valid until the mapping goes, as <see cref="GetPage"/>'s.</returns>
    /// <exception cref="ArgumentException">
    /// <paramref name="mapping"/> is not a live mapping of this mapper (another mapper's, or one unmapped already).
    /// </exception>
    ReadOnlySpan<byte> GetReadOnlyPage(in GrantMapping mapping);

    /// <summary>Unmaps a mapping.</summary>
    /// <param name="mapping">A live mapping made by this mapper.</param>
    /// <returns>
    /// The hypervisor's status. A mapping this mapper does not hold (another mapper's, or one it unmapped already) is
    /// refused with an error status and changes nothing (<see cref="InProcessGrantMapper"/>:
    /// <see cref="GrantStatus.GeneralError"/>; gntdev: <c>-ENOENT</c>). A copy of a mapping
    /// kept past its unmap cannot be told from a newer mapping that got the same place, grant and maptrack handle
    /// (gntdev's index has the same limit): do not keep one.
    /// </returns>
    GrantStatus Unmap(in GrantMapping mapping);

    /// <summary>Copies by grant (<c>GNTTABOP_copy</c>, <c>xengnttab_grant_copy</c>); each operation's <c>Status</c> is set.</summary>
    /// <param name="operations">The copy operations.</param>
    void Copy(Span<GnttabCopy> operations);
}
