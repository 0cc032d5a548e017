namespace VmmKit.GrantTable;

/// <summary>Per-operation status codes (<c>GNTST_*</c>, xen/grant_table.h), written into each operation's <c>status</c> field.</summary>
public enum GrantStatus : short
{
    /// <summary><c>GNTST_okay</c>.</summary>
    Okay = 0,
    /// <summary><c>GNTST_general_error</c>.</summary>
    GeneralError = -1,
    /// <summary><c>GNTST_bad_domain</c>: unrecognised domain id.</summary>
    BadDomain = -2,
    /// <summary><c>GNTST_bad_gntref</c>: unrecognised or inappropriate grant reference.</summary>
    BadGntref = -3,
    /// <summary><c>GNTST_bad_handle</c>: unrecognised or inappropriate mapping handle.</summary>
    BadHandle = -4,
    /// <summary><c>GNTST_bad_virt_addr</c>: inappropriate virtual address to map.</summary>
    BadVirtAddr = -5,
    /// <summary><c>GNTST_bad_dev_addr</c>: inappropriate device address to unmap.</summary>
    BadDevAddr = -6,
    /// <summary><c>GNTST_no_device_space</c>: out of space in I/O MMU.</summary>
    NoDeviceSpace = -7,
    /// <summary><c>GNTST_permission_denied</c>.</summary>
    PermissionDenied = -8,
    /// <summary><c>GNTST_bad_page</c>: the specified page was invalid for the operation.</summary>
    BadPage = -9,
    /// <summary><c>GNTST_bad_copy_arg</c>: copy arguments cross a page boundary.</summary>
    BadCopyArg = -10,
    /// <summary><c>GNTST_address_too_big</c>.</summary>
    AddressTooBig = -11,
    /// <summary><c>GNTST_eagain</c>: the operation could not be done now (e.g. the entry is in use).</summary>
    Eagain = -12,
    /// <summary><c>GNTST_no_space</c>: out of space (handles etc.: a full maptrack, map_grant_ref).</summary>
    NoSpace = -13,
}
