using System.Runtime.InteropServices;

namespace VmmKit.GrantTable;

/// <summary>
/// <c>struct grant_entry_v1</c> (xen/grant_table.h), 8 bytes: one entry of a version-1 shared grant table.
/// The granter writes <see cref="DomId"/> and <see cref="Frame"/> first, then <see cref="Flags"/>; the
/// hypervisor sets <see cref="GrantEntryFlags.Reading"/>/<see cref="GrantEntryFlags.Writing"/> in the same flags word.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public struct GrantEntryV1
{
    /// <summary>Size of one entry in bytes.</summary>
    public const int Size = 8;

    /// <summary>Entries per 4 KiB frame.</summary>
    public const int PerFrame = 4096 / Size;

    /// <summary><c>flags</c>: <see cref="GrantEntryFlags"/>.</summary>
    public ushort Flags;

    /// <summary><c>domid</c>: the domain being granted access.</summary>
    public ushort DomId;

    /// <summary><c>frame</c>: the granter's guest frame number.</summary>
    public uint Frame;
}
