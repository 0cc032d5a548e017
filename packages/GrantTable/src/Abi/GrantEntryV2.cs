using System.Runtime.InteropServices;

namespace VmmKit.GrantTable;

/// <summary>
/// <c>union grant_entry_v2</c> (xen/grant_table.h), 16 bytes: one entry of a version-2 shared grant table.
/// The header (<see cref="Flags"/>, <see cref="DomId"/>) is common; the rest is read as <c>full_page</c>,
/// <c>sub_page</c> or <c>transitive</c> depending on the flags. Status bits live in a separate status frame
/// (<c>grant_status_t</c>, 2 bytes per entry).
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = Size)]
public struct GrantEntryV2
{
    /// <summary>Size of one entry in bytes.</summary>
    public const int Size = 16;

    /// <summary>Entries per 4 KiB frame (<c>GRANT_PER_PAGE</c>).</summary>
    public const int PerFrame = 4096 / Size;

    /// <summary><c>grant_status_t</c> entries per 4 KiB status frame (<c>GRANT_STATUS_PER_PAGE</c>).</summary>
    public const int StatusPerFrame = 4096 / sizeof(ushort);

    /// <summary><c>hdr.flags</c>: <see cref="GrantEntryFlags"/>.</summary>
    [FieldOffset(0)] public ushort Flags;

    /// <summary><c>hdr.domid</c>: the domain being granted access.</summary>
    [FieldOffset(2)] public ushort DomId;

    /// <summary><c>full_page.pad0</c>.</summary>
    [FieldOffset(4)] public uint FullPagePad0;

    /// <summary><c>full_page.frame</c> (also <c>sub_page.frame</c>): the granter's guest frame number.</summary>
    [FieldOffset(8)] public ulong Frame;

    /// <summary><c>sub_page.page_off</c>: first granted byte of a <see cref="GrantEntryFlags.SubPage"/> grant.</summary>
    [FieldOffset(4)] public ushort SubPageOffset;

    /// <summary><c>sub_page.length</c>: number of granted bytes of a <see cref="GrantEntryFlags.SubPage"/> grant.</summary>
    [FieldOffset(6)] public ushort SubPageLength;

    /// <summary><c>transitive.trans_domid</c>: the domain whose grant is passed on.</summary>
    [FieldOffset(4)] public ushort TransDomId;

    /// <summary><c>transitive.pad0</c>.</summary>
    [FieldOffset(6)] public ushort TransPad0;

    /// <summary><c>transitive.gref</c>: the grant reference in <see cref="TransDomId"/>'s table.</summary>
    [FieldOffset(8)] public uint TransGref;
}
