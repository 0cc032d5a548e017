using System.Runtime.InteropServices;

namespace VmmKit.GrantTable;

/// <summary><c>struct gnttab_copy_ptr</c> (xen/grant_table.h) for 64-bit callers, 16 bytes.</summary>
[StructLayout(LayoutKind.Explicit, Size = 16)]
public struct GnttabCopyPtr
{
    /// <summary><c>u.ref</c>: a grant reference (with the matching <see cref="GrantCopyFlags"/> bit).</summary>
    [FieldOffset(0)] public uint Ref;
    /// <summary><c>u.gmfn</c>: a guest frame number of <c>DOMID_SELF</c> (without the flag bit).</summary>
    [FieldOffset(0)] public ulong Gmfn;
    /// <summary><c>domid</c>.</summary>
    [FieldOffset(8)] public ushort DomId;
    /// <summary><c>offset</c>: byte offset in the frame.</summary>
    [FieldOffset(10)] public ushort Offset;
}

/// <summary><c>struct gnttab_copy</c> (xen/grant_table.h) for 64-bit callers, 40 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct GnttabCopy
{
    /// <summary>IN <c>source</c>.</summary>
    public GnttabCopyPtr Source;
    /// <summary>IN <c>dest</c>.</summary>
    public GnttabCopyPtr Dest;
    /// <summary>IN <c>len</c>: bytes to copy; neither side may cross its page.</summary>
    public ushort Len;
    /// <summary>IN <c>flags</c>: <see cref="GrantCopyFlags"/>.</summary>
    public ushort Flags;
    /// <summary>OUT <c>status</c>.</summary>
    public short Status;
}

/// <summary><c>struct gnttab_copy_ptr</c> for 32-bit callers (compat ABI: <c>gmfn</c> is a 4-byte <c>compat_pfn_t</c>), 8 bytes.</summary>
[StructLayout(LayoutKind.Explicit, Size = 8)]
public struct CompatGnttabCopyPtr
{
    /// <summary><c>u.ref</c>.</summary>
    [FieldOffset(0)] public uint Ref;
    /// <summary><c>u.gmfn</c>.</summary>
    [FieldOffset(0)] public uint Gmfn;
    /// <summary><c>domid</c>.</summary>
    [FieldOffset(4)] public ushort DomId;
    /// <summary><c>offset</c>.</summary>
    [FieldOffset(6)] public ushort Offset;
}

/// <summary><c>struct gnttab_copy</c> for 32-bit callers (compat ABI), 24 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct CompatGnttabCopy
{
    /// <summary>IN <c>source</c>.</summary>
    public CompatGnttabCopyPtr Source;
    /// <summary>IN <c>dest</c>.</summary>
    public CompatGnttabCopyPtr Dest;
    /// <summary>IN <c>len</c>.</summary>
    public ushort Len;
    /// <summary>IN <c>flags</c>.</summary>
    public ushort Flags;
    /// <summary>OUT <c>status</c>.</summary>
    public short Status;
}
