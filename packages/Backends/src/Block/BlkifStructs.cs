using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace VmmKit.Backends.Block;

/// <summary><c>struct blkif_request_segment</c> (xen/io/blkif.h), 8 bytes in both ABIs.</summary>
[StructLayout(LayoutKind.Explicit, Size = 8)]
public struct BlkifRequestSegment
{
    /// <summary><c>gref</c>: grant reference of the I/O page.</summary>
    [FieldOffset(0)] public uint Gref;
    /// <summary><c>first_sect</c>: first 512-byte sector of the page to transfer (inclusive).</summary>
    [FieldOffset(4)] public byte FirstSect;
    /// <summary><c>last_sect</c>: last 512-byte sector of the page to transfer (inclusive).</summary>
    [FieldOffset(5)] public byte LastSect;
}

/// <summary>The 11 <c>seg[]</c> entries of a request.</summary>
[InlineArray(BlkifLimits.MaxSegmentsPerRequest)]
public struct BlkifSegments
{
    private BlkifRequestSegment _s;
}

/// <summary>The 8 <c>indirect_grefs[]</c> of an indirect request.</summary>
[InlineArray(BlkifLimits.MaxIndirectPagesPerRequest)]
public struct BlkifIndirectGrefs
{
    private uint _g;
}

/// <summary><c>struct blkif_request</c> (xen/io/blkif.h), x86_64-abi: 112 bytes.</summary>
[StructLayout(LayoutKind.Explicit, Size = 112)]
public struct BlkifRequest
{
    /// <summary><c>operation</c>: <see cref="BlkifOperation"/>.</summary>
    [FieldOffset(0)] public byte Operation;
    /// <summary><c>nr_segments</c>.</summary>
    [FieldOffset(1)] public byte NrSegments;
    /// <summary><c>handle</c>: the virtual device.</summary>
    [FieldOffset(2)] public ushort Handle;
    /// <summary><c>id</c>: the frontend's value, echoed in the response.</summary>
    [FieldOffset(8)] public ulong Id;
    /// <summary><c>sector_number</c>: first 512-byte sector on the disk.</summary>
    [FieldOffset(16)] public ulong SectorNumber;
    /// <summary><c>seg[BLKIF_MAX_SEGMENTS_PER_REQUEST]</c>.</summary>
    [FieldOffset(24)] public BlkifSegments Seg;
}

/// <summary><c>struct blkif_x86_32_request</c> (x86_32-abi, as Linux's blkback names it): 108 bytes, 64-bit fields 4-byte aligned.</summary>
[StructLayout(LayoutKind.Explicit, Size = 108)]
public struct BlkifX86_32Request
{
    /// <summary><c>operation</c>.</summary>
    [FieldOffset(0)] public byte Operation;
    /// <summary><c>nr_segments</c>.</summary>
    [FieldOffset(1)] public byte NrSegments;
    /// <summary><c>handle</c>.</summary>
    [FieldOffset(2)] public ushort Handle;
    /// <summary><c>id</c>.</summary>
    [FieldOffset(4)] public ulong Id;
    /// <summary><c>sector_number</c>.</summary>
    [FieldOffset(12)] public ulong SectorNumber;
    /// <summary><c>seg[11]</c>.</summary>
    [FieldOffset(20)] public BlkifSegments Seg;
}

/// <summary><c>struct blkif_request_indirect</c> (xen/io/blkif.h), x86_64-abi: 64 bytes (overlays a <see cref="BlkifRequest"/> slot).</summary>
[StructLayout(LayoutKind.Explicit, Size = 64)]
public struct BlkifRequestIndirect
{
    /// <summary><c>operation</c>: <see cref="BlkifOperation.Indirect"/>.</summary>
    [FieldOffset(0)] public byte Operation;
    /// <summary><c>indirect_op</c>: read or write.</summary>
    [FieldOffset(1)] public byte IndirectOp;
    /// <summary><c>nr_segments</c>.</summary>
    [FieldOffset(2)] public ushort NrSegments;
    /// <summary><c>id</c>.</summary>
    [FieldOffset(8)] public ulong Id;
    /// <summary><c>sector_number</c>.</summary>
    [FieldOffset(16)] public ulong SectorNumber;
    /// <summary><c>handle</c>.</summary>
    [FieldOffset(24)] public ushort Handle;
    /// <summary><c>indirect_grefs[8]</c>: pages holding <see cref="BlkifRequestSegment"/> arrays.</summary>
    [FieldOffset(28)] public BlkifIndirectGrefs IndirectGrefs;
}

/// <summary><c>struct blkif_request_indirect</c> in the x86_32-abi: 64 bytes (with i386's trailing <c>pad</c>).</summary>
[StructLayout(LayoutKind.Explicit, Size = 64)]
public struct BlkifX86_32RequestIndirect
{
    /// <summary><c>operation</c>.</summary>
    [FieldOffset(0)] public byte Operation;
    /// <summary><c>indirect_op</c>.</summary>
    [FieldOffset(1)] public byte IndirectOp;
    /// <summary><c>nr_segments</c>.</summary>
    [FieldOffset(2)] public ushort NrSegments;
    /// <summary><c>id</c>.</summary>
    [FieldOffset(4)] public ulong Id;
    /// <summary><c>sector_number</c>.</summary>
    [FieldOffset(12)] public ulong SectorNumber;
    /// <summary><c>handle</c>.</summary>
    [FieldOffset(20)] public ushort Handle;
    /// <summary><c>indirect_grefs[8]</c>.</summary>
    [FieldOffset(24)] public BlkifIndirectGrefs IndirectGrefs;
}

/// <summary><c>struct blkif_response</c> (xen/io/blkif.h), x86_64-abi: 16 bytes.</summary>
[StructLayout(LayoutKind.Explicit, Size = 16)]
public struct BlkifResponse
{
    /// <summary><c>id</c>: copied from the request.</summary>
    [FieldOffset(0)] public ulong Id;
    /// <summary><c>operation</c>: copied from the request.</summary>
    [FieldOffset(8)] public byte Operation;
    /// <summary><c>status</c>: <see cref="BlkifStatus"/>.</summary>
    [FieldOffset(10)] public short Status;
}

/// <summary><c>struct blkif_response</c> in the x86_32-abi: 12 bytes.</summary>
[StructLayout(LayoutKind.Explicit, Size = 12)]
public struct BlkifX86_32Response
{
    /// <summary><c>id</c>.</summary>
    [FieldOffset(0)] public ulong Id;
    /// <summary><c>operation</c>.</summary>
    [FieldOffset(8)] public byte Operation;
    /// <summary><c>status</c>.</summary>
    [FieldOffset(10)] public short Status;
}
