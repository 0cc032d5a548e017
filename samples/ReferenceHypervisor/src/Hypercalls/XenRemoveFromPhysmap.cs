using System.Runtime.InteropServices;

namespace VmmKit.ReferenceHypervisor.Hypercalls;

/// <summary><c>struct xen_remove_from_physmap</c> (xen/include/public/memory.h) for 64-bit callers, 16 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct XenRemoveFromPhysmap
{
    /// <summary>XENMEM_remove_from_physmap's sub-op number.</summary>
    public const uint SubOp = 15;

    /// <summary><c>domid</c>: the domain whose physmap changes (DOMID_SELF for the caller).</summary>
    public ushort Domid;

    /// <summary><c>gpfn</c> (<c>xen_pfn_t</c>): the guest frame to remove.</summary>
    public ulong Gpfn;
}

/// <summary><c>struct xen_remove_from_physmap</c> for 32-bit callers (<c>xen_pfn_t</c> is 32 bits), 8 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct CompatXenRemoveFromPhysmap
{
    /// <summary><c>domid</c>.</summary>
    public ushort Domid;

    /// <summary><c>gpfn</c>.</summary>
    public uint Gpfn;
}
