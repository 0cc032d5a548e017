namespace VmmKit.XenStore.Store;

/// <summary>
/// Who is asking: the identity xenstored's <c>perm_for_conn</c> looks at. Socket connections act as dom0.
/// </summary>
internal readonly record struct XsCaller(uint DomainId, bool Privileged, uint? Target)
{
    /// <summary>
    /// xenstored's <c>perm_for_conn</c>: the privileged and the owner (or the owner's controlling domain via
    /// SET_TARGET) get everything; otherwise the first later entry naming the caller; otherwise the
    /// default in entry 0.
    /// </summary>
    public XsAccess AccessTo(XsPermission[] perms)
    {
        const XsAccess All = XsAccess.Read | XsAccess.Write | XsAccess.Owner;
        if (Privileged || perms[0].DomainId == DomainId || (Target is uint t && perms[0].DomainId == t))
            return All;
        for (int i = 1; i < perms.Length; i++)
        {
            if ((perms[i].Access & XsAccess.Ignore) == 0 && (perms[i].DomainId == DomainId || (Target is uint t2 && perms[i].DomainId == t2)))
                return perms[i].Access & XsAccess.Both;
        }
        return perms[0].Access & XsAccess.Both;
    }
}
