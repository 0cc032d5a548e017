namespace VmmKit.Backends.Block;

/// <summary><c>BLKIF_OP_*</c> (xen/io/blkif.h): the operation of a request.</summary>
public enum BlkifOperation : byte
{
    /// <summary><c>BLKIF_OP_READ</c>.</summary>
    Read = 0,
    /// <summary><c>BLKIF_OP_WRITE</c>.</summary>
    Write = 1,
    /// <summary><c>BLKIF_OP_WRITE_BARRIER</c> (not advertised here: answered EOPNOTSUPP).</summary>
    WriteBarrier = 2,
    /// <summary><c>BLKIF_OP_FLUSH_DISKCACHE</c>: <c>feature-flush-cache</c>.</summary>
    FlushDiskCache = 3,
    /// <summary><c>BLKIF_OP_RESERVED_1</c>.</summary>
    Reserved1 = 4,
    /// <summary><c>BLKIF_OP_DISCARD</c> (not advertised here: answered EOPNOTSUPP).</summary>
    Discard = 5,
    /// <summary><c>BLKIF_OP_INDIRECT</c>: segments listed in granted indirect pages (<c>feature-max-indirect-segments</c>).</summary>
    Indirect = 6,
}

/// <summary><c>BLKIF_RSP_*</c> (xen/io/blkif.h): a response's status.</summary>
public enum BlkifStatus : short
{
    /// <summary><c>BLKIF_RSP_EOPNOTSUPP</c>: the operation is not supported.</summary>
    NotSupported = -2,
    /// <summary><c>BLKIF_RSP_ERROR</c>: the operation failed (-EIO).</summary>
    Error = -1,
    /// <summary><c>BLKIF_RSP_OKAY</c>.</summary>
    Okay = 0,
}

/// <summary><c>VDISK_*</c> (xen/io/blkif.h): the backend's <c>info</c> node.</summary>
[Flags]
public enum VdiskInfo : uint
{
    /// <summary>No flag.</summary>
    None = 0,
    /// <summary><c>VDISK_CDROM</c>.</summary>
    CdRom = 0x1,
    /// <summary><c>VDISK_REMOVABLE</c>.</summary>
    Removable = 0x2,
    /// <summary><c>VDISK_READONLY</c>.</summary>
    ReadOnly = 0x4,
}

/// <summary>
/// The ring layout a frontend chose in its <c>protocol</c> node (xen/io/protocols.h): the native (64-bit) layout of
/// <c>blkif.h</c>, or that of a 32-bit x86 frontend, whose 64-bit fields are only 4-byte aligned.
/// </summary>
public enum BlkifProtocol
{
    /// <summary><c>XEN_IO_PROTO_ABI_X86_64</c> ("x86_64-abi"), also when the frontend writes no <c>protocol</c>.</summary>
    X86_64,
    /// <summary><c>XEN_IO_PROTO_ABI_X86_32</c> ("x86_32-abi").</summary>
    X86_32,
}

/// <summary>Limits of xen/io/blkif.h.</summary>
public static class BlkifLimits
{
    /// <summary><c>BLKIF_MAX_SEGMENTS_PER_REQUEST</c>.</summary>
    public const int MaxSegmentsPerRequest = 11;

    /// <summary><c>BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST</c>.</summary>
    public const int MaxIndirectPagesPerRequest = 8;

    /// <summary>Segments in one indirect page (<c>PAGE_SIZE / sizeof(struct blkif_request_segment)</c>).</summary>
    public const int SegmentsPerIndirectPage = 4096 / 8;

    /// <summary>The unit of <c>sector_number</c>, <c>first_sect</c> and <c>last_sect</c>: 512 bytes, whatever <c>sector-size</c> says.</summary>
    public const int SectorSize = 512;

    /// <summary>Sectors in one segment's page.</summary>
    public const int SectorsPerPage = 4096 / SectorSize;

    /// <summary><c>XEN_IO_PROTO_ABI_X86_32</c>.</summary>
    public const string ProtocolX86_32 = "x86_32-abi";

    /// <summary><c>XEN_IO_PROTO_ABI_X86_64</c>.</summary>
    public const string ProtocolX86_64 = "x86_64-abi";
}
