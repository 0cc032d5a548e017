namespace VmmKit.GrantTable;

/// <summary>
/// Granting, as a frontend does (Linux's <c>gnttab_grant_foreign_access</c> family, libxengntshr): give another
/// domain access to one of my frames, end that access, and ask whether it is still in use.
/// </summary>
public interface IGrantShare
{
    /// <summary>Grants <paramref name="domainId"/> access to my guest frame <paramref name="frame"/>.</summary>
    /// <param name="domainId">The grantee.</param>
    /// <param name="frame">My guest frame number.</param>
    /// <param name="readOnly">Grant read-only access (<c>GTF_readonly</c>).</param>
    /// <param name="grantRef">The grant reference to pass to the grantee (e.g. through XenStore).</param>
    /// <returns>False when no grant reference is free.</returns>
    bool TryGrantForeignAccess(ushort domainId, ulong frame, bool readOnly, out uint grantRef);

    /// <summary>
    /// Ends a grant (<c>gnttab_end_foreign_access_ref</c>): succeeds only when the grantee has no mapping and no copy
    /// in progress; then the reference is free again. A grant still in use stays valid; try again later.
    /// </summary>
    /// <param name="grantRef">A reference returned by <see cref="TryGrantForeignAccess"/>.</param>
    /// <returns>True when access ended.</returns>
    bool EndForeignAccess(uint grantRef);

    /// <summary>True when the grantee currently maps or copies through the grant (<c>GTF_reading</c>/<c>GTF_writing</c>).</summary>
    /// <param name="grantRef">A reference returned by <see cref="TryGrantForeignAccess"/>.</param>
    /// <returns>Whether the grant is in use.</returns>
    bool IsForeignAccessInUse(uint grantRef);
}
