namespace VmmKit.GrantTable;

/// <summary>
/// Flags of a shared grant entry (<c>GTF_*</c>, xen/grant_table.h). The low two bits are the type
/// (<see cref="TypeMask"/>); v2 keeps <see cref="Reading"/> and <see cref="Writing"/> in the status frames instead.
/// </summary>
[Flags]
public enum GrantEntryFlags : ushort
{
    /// <summary><c>GTF_invalid</c>: the entry grants nothing.</summary>
    Invalid = 0,
    /// <summary><c>GTF_permit_access</c>: the named domain may map or copy the frame.</summary>
    PermitAccess = 1,
    /// <summary><c>GTF_accept_transfer</c>: the named domain may transfer a frame to the granter.</summary>
    AcceptTransfer = 2,
    /// <summary><c>GTF_transitive</c> (v2): access to another domain's grant; refused here (XSA-226).</summary>
    Transitive = 3,
    /// <summary><c>GTF_type_mask</c>.</summary>
    TypeMask = 3,
    /// <summary><c>GTF_readonly</c>: the grantee may only read.</summary>
    ReadOnly = 1 << 2,
    /// <summary><c>GTF_reading</c>: set by the hypervisor while the grant is in use.</summary>
    Reading = 1 << 3,
    /// <summary><c>GTF_writing</c>: set by the hypervisor while the grant is in use for writing.</summary>
    Writing = 1 << 4,
    /// <summary><c>GTF_PWT</c>: cache attribute of a mapping of I/O memory; ignored for RAM, as Xen ignores it.</summary>
    Pwt = 1 << 5,
    /// <summary><c>GTF_PCD</c>: cache attribute of a mapping of I/O memory; ignored for RAM, as Xen ignores it.</summary>
    Pcd = 1 << 6,
    /// <summary><c>GTF_PAT</c>: cache attribute of a mapping of I/O memory; ignored for RAM, as Xen ignores it.</summary>
    Pat = 1 << 7,
    /// <summary><c>GTF_sub_page</c> (v2): only <c>sub_page.length</c> bytes from <c>sub_page.page_off</c> are granted; copy only.</summary>
    SubPage = 1 << 8,
}
