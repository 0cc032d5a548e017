using System.Runtime.InteropServices;

namespace VmmKit.GrantTable;

/// <summary><c>struct gnttab_setup_table</c> (xen/grant_table.h) for 64-bit callers, 24 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct GnttabSetupTable
{
    /// <summary>IN <c>dom</c>.</summary>
    public ushort Dom;
    /// <summary>IN <c>nr_frames</c>: grow the table to at least this many frames and report them.</summary>
    public uint NrFrames;
    /// <summary>OUT <c>status</c>.</summary>
    public short Status;
    /// <summary>IN <c>frame_list</c>: guest handle of <c>xen_pfn_t[nr_frames]</c> (8 bytes each).</summary>
    public ulong FrameList;
}

/// <summary><c>struct gnttab_setup_table</c> for 32-bit callers (compat ABI), 16 bytes; <c>frame_list</c> holds 4-byte <c>compat_pfn_t</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct CompatGnttabSetupTable
{
    /// <summary>IN <c>dom</c>.</summary>
    public ushort Dom;
    /// <summary>IN <c>nr_frames</c>.</summary>
    public uint NrFrames;
    /// <summary>OUT <c>status</c>.</summary>
    public short Status;
    /// <summary>IN <c>frame_list</c>: 32-bit guest handle.</summary>
    public uint FrameList;
}

/// <summary><c>struct gnttab_query_size</c> (xen/grant_table.h), 16 bytes in both ABIs.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct GnttabQuerySize
{
    /// <summary>IN <c>dom</c>.</summary>
    public ushort Dom;
    /// <summary>OUT <c>nr_frames</c>.</summary>
    public uint NrFrames;
    /// <summary>OUT <c>max_nr_frames</c>.</summary>
    public uint MaxNrFrames;
    /// <summary>OUT <c>status</c>.</summary>
    public short Status;
}

/// <summary><c>struct gnttab_set_version</c> (xen/grant_table.h), 4 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct GnttabSetVersion
{
    /// <summary>IN/OUT <c>version</c>: 1 or 2; the version in force on return.</summary>
    public uint Version;
}

/// <summary><c>struct gnttab_get_version</c> (xen/grant_table.h), 8 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct GnttabGetVersion
{
    /// <summary>IN <c>dom</c>.</summary>
    public ushort Dom;
    /// <summary><c>pad</c>.</summary>
    public ushort Pad;
    /// <summary>OUT <c>version</c>.</summary>
    public uint Version;
}

/// <summary><c>struct gnttab_get_status_frames</c> (xen/grant_table.h) for 64-bit callers, 16 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct GnttabGetStatusFrames
{
    /// <summary>IN <c>nr_frames</c>.</summary>
    public uint NrFrames;
    /// <summary>IN <c>dom</c>.</summary>
    public ushort Dom;
    /// <summary>OUT <c>status</c>.</summary>
    public short Status;
    /// <summary>IN <c>frame_list</c>: guest handle of <c>uint64_t[nr_frames]</c>.</summary>
    public ulong FrameList;
}

/// <summary><c>struct gnttab_get_status_frames</c> for 32-bit callers (compat ABI), 12 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct CompatGnttabGetStatusFrames
{
    /// <summary>IN <c>nr_frames</c>.</summary>
    public uint NrFrames;
    /// <summary>IN <c>dom</c>.</summary>
    public ushort Dom;
    /// <summary>OUT <c>status</c>.</summary>
    public short Status;
    /// <summary>IN <c>frame_list</c>: 32-bit guest handle of <c>uint64_t[nr_frames]</c>.</summary>
    public uint FrameList;
}
