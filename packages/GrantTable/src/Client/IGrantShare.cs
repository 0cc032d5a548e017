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
    /// <returns>
    /// False, with no reference taken, when no grant reference is free (an implementation may first grow the table, as
    /// Linux's <c>gnttab_expand</c>: <see cref="InProcessGrantShare"/> does), when <paramref name="frame"/> does not fit the
    /// entries of the table's version (above 2^32 - 1 under version 1: <c>grant_entry_v1_t</c>'s frame is 32 bits), or
    /// when my grant table is gone (my domain was destroyed).
    /// </returns>
    bool TryGrantForeignAccess(ushort domainId, ulong frame, bool readOnly, out uint grantRef);

    /// <summary>
    /// Ends a grant (<c>gnttab_end_foreign_access_ref</c>): succeeds only when the grantee has no mapping and no copy
    /// in progress; then the reference is free again. When it fails, the grantee may still read or write the frame:
    /// keep the frame (do not free, reuse or hand it out) and try again later, as Linux's
    /// <c>gnttab_end_foreign_access</c> keeps the page on its deferred list until the end succeeds. Under version 1 a
    /// grant still in use stays valid. Under version 2 the entry is invalidated first and the status read after
    /// (<c>gnttab_end_foreign_access_ref_v2</c>): the grantee keeps the mappings it has (while one remains, Xen's
    /// <c>_set_status_v2</c> skips the entry's checks, so it may add read-only ones), but it takes no writable one (the
    /// invalid entry keeps <c>GTF_readonly</c>, the one flag Xen checks on a pinned entry), and once its mappings are
    /// gone it cannot map the grant again.
    /// A reference the table no longer has (a switch to version 2, which clears every entry but the reserved ones,
    /// left fewer entries, or my domain was destroyed) has already ended: this succeeds.
    /// </summary>
    /// <param name="grantRef">A reference returned by <see cref="TryGrantForeignAccess"/>.</param>
    /// <returns>True when access ended: only then may the frame be freed or granted again.</returns>
    /// <exception cref="ArgumentException">
    /// <paramref name="grantRef"/> is not a live grant of this object (never granted by it, or ended already); Linux
    /// does not check.
    /// </exception>
    bool EndForeignAccess(uint grantRef);

    /// <summary>
    /// True when the grantee currently maps or copies through the grant (<c>GTF_reading</c>/<c>GTF_writing</c>), as
    /// Linux's <c>gnttab_query_foreign_access</c> answered. The answer may be stale when it returns: a grant not ended
    /// can be mapped or copied the moment after a false. Never free or reuse the frame on it; only a true from
    /// <see cref="EndForeignAccess"/> ends access (XSA-396: Linux removed <c>gnttab_query_foreign_access</c> because
    /// its frontends freed pages on such an answer).
    /// </summary>
    /// <param name="grantRef">A reference returned by <see cref="TryGrantForeignAccess"/>.</param>
    /// <returns>Whether the grant is in use; false for a reference the table no longer has.</returns>
    /// <exception cref="ArgumentException">
    /// <paramref name="grantRef"/> is not a live grant of this object (never granted by it, or ended already).
    /// </exception>
    bool IsForeignAccessInUse(uint grantRef);
}
