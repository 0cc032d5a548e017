namespace VmmKit.XenStore.Wire;

/// <summary>
/// <c>enum xsd_sockmsg_type</c> from <c>xen/io/xs_wire.h</c>: the type field of every XenStore message.
/// </summary>
public enum XsMessageType : uint
{
    /// <summary><c>XS_CONTROL</c> (formerly <c>XS_DEBUG</c>): an implementation-specific control command.</summary>
    Control = 0,
    /// <summary><c>XS_DIRECTORY</c>: list the children of a node.</summary>
    Directory = 1,
    /// <summary><c>XS_READ</c>: read a node's value.</summary>
    Read = 2,
    /// <summary><c>XS_GET_PERMS</c>: read a node's permissions.</summary>
    GetPerms = 3,
    /// <summary><c>XS_WATCH</c>: register a watch on a subtree.</summary>
    Watch = 4,
    /// <summary><c>XS_UNWATCH</c>: remove a watch.</summary>
    Unwatch = 5,
    /// <summary><c>XS_TRANSACTION_START</c>: open a transaction.</summary>
    TransactionStart = 6,
    /// <summary><c>XS_TRANSACTION_END</c>: commit (<c>T</c>) or abort (<c>F</c>) a transaction.</summary>
    TransactionEnd = 7,
    /// <summary><c>XS_INTRODUCE</c>: tell the daemon about a domain's ring page and event channel.</summary>
    Introduce = 8,
    /// <summary><c>XS_RELEASE</c>: forget a domain.</summary>
    Release = 9,
    /// <summary><c>XS_GET_DOMAIN_PATH</c>: the home path of a domain, <c>/local/domain/&lt;domid&gt;</c>.</summary>
    GetDomainPath = 10,
    /// <summary><c>XS_WRITE</c>: write a node's value, creating missing parents.</summary>
    Write = 11,
    /// <summary><c>XS_MKDIR</c>: make sure a node exists.</summary>
    Mkdir = 12,
    /// <summary><c>XS_RM</c>: remove a node and its subtree.</summary>
    Rm = 13,
    /// <summary><c>XS_SET_PERMS</c>: replace a node's permissions.</summary>
    SetPerms = 14,
    /// <summary><c>XS_WATCH_EVENT</c>: an unsolicited watch notification.</summary>
    WatchEvent = 15,
    /// <summary><c>XS_ERROR</c>: an error reply carrying an errno name.</summary>
    Error = 16,
    /// <summary><c>XS_IS_DOMAIN_INTRODUCED</c>: <c>T</c> or <c>F</c>.</summary>
    IsDomainIntroduced = 17,
    /// <summary><c>XS_RESUME</c>: re-arm <c>@releaseDomain</c> for a domain.</summary>
    Resume = 18,
    /// <summary><c>XS_SET_TARGET</c>: let a domain act for another (device-model stub domains).</summary>
    SetTarget = 19,
    /// <summary>The removed <c>XS_RESTRICT</c>; always answered with ENOSYS.</summary>
    RestrictRemoved = 20,
    /// <summary><c>XS_RESET_WATCHES</c>: drop all watches and transactions of the caller.</summary>
    ResetWatches = 21,
    /// <summary><c>XS_DIRECTORY_PART</c>: a slice of a long child list with the node's generation count.</summary>
    DirectoryPart = 22,
    /// <summary><c>XS_GET_FEATURE</c> (newer than Debian's 4.17 header; number from Xen's docs/misc/xenstore.txt): the server's or a domain's feature bitmap.</summary>
    GetFeature = 23,
    /// <summary><c>XS_SET_FEATURE</c> (newer than Debian's 4.17 header; number from Xen's docs/misc/xenstore.txt): set a domain's feature bitmap.</summary>
    SetFeature = 24,
    /// <summary><c>XS_GET_QUOTA</c> (newer than Debian's 4.17 header; number from Xen's docs/misc/xenstore.txt): list quota names or read a global or per-domain quota.</summary>
    GetQuota = 25,
    /// <summary><c>XS_SET_QUOTA</c> (newer than Debian's 4.17 header; number from Xen's docs/misc/xenstore.txt): set a global or per-domain quota.</summary>
    SetQuota = 26,
    /// <summary><c>XS_TYPE_COUNT</c>: the number of valid types.</summary>
    TypeCount = 27,
    /// <summary><c>XS_INVALID</c>: guaranteed to remain an invalid type.</summary>
    Invalid = 0xffff,
}
