namespace VmmKit.Hypercall;

/// <summary>Reserved domain ids (<c>DOMID_*</c>, xen/xen.h); <c>domid_t</c> is <c>uint16_t</c>.</summary>
public static class DomainId
{
    /// <summary><c>DOMID_FIRST_RESERVED</c>: ids from here up are not real domains.</summary>
    public const ushort FirstReserved = 0x7FF0;
    /// <summary><c>DOMID_SELF</c>: the calling domain.</summary>
    public const ushort Self = 0x7FF0;
    /// <summary><c>DOMID_IO</c>.</summary>
    public const ushort Io = 0x7FF1;
    /// <summary><c>DOMID_XEN</c>: the hypervisor itself.</summary>
    public const ushort Xen = 0x7FF2;
    /// <summary><c>DOMID_COW</c>.</summary>
    public const ushort Cow = 0x7FF3;
    /// <summary><c>DOMID_INVALID</c>.</summary>
    public const ushort Invalid = 0x7FF4;
    /// <summary><c>DOMID_IDLE</c>.</summary>
    public const ushort Idle = 0x7FFF;
}
