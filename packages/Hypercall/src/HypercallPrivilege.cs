namespace VmmKit.Hypercall;

/// <summary>Who may make a hypercall under <see cref="HypercallPrivilegePolicy{TCaller}"/> (the actions of Xen's dummy XSM policy).</summary>
public enum HypercallPrivilege : byte
{
    /// <summary>No sub-operation override: use the hypercall's level.</summary>
    Inherit = 0,
    /// <summary>Any domain (Xen's <c>XSM_HOOK</c>).</summary>
    Any = 1,
    /// <summary>Only privileged domains, i.e. the control domain (Xen's <c>XSM_PRIV</c>).</summary>
    Privileged = 2,
    /// <summary>Nobody: always -EPERM.</summary>
    Denied = 3,
}
