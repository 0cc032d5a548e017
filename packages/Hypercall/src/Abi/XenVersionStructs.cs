using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace VmmKit.Hypercall;

/// <summary><c>struct xen_compile_info</c> (xen/version.h), the argument of <c>XENVER_compile_info</c>; 144 bytes in both ABIs.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct XenCompileInfo
{
    /// <summary><c>char compiler[64]</c>.</summary>
    public CompilerText Compiler;
    /// <summary><c>char compile_by[16]</c>.</summary>
    public CompileByText CompileBy;
    /// <summary><c>char compile_domain[32]</c>.</summary>
    public CompileDomainText CompileDomain;
    /// <summary><c>char compile_date[32]</c>.</summary>
    public CompileDateText CompileDate;

    /// <summary><c>char[64]</c>.</summary>
    [InlineArray(64)]
    public struct CompilerText { private byte _element0; }

    /// <summary><c>char[16]</c>.</summary>
    [InlineArray(16)]
    public struct CompileByText { private byte _element0; }

    /// <summary><c>char[32]</c>.</summary>
    [InlineArray(32)]
    public struct CompileDomainText { private byte _element0; }

    /// <summary><c>char[32]</c>.</summary>
    [InlineArray(32)]
    public struct CompileDateText { private byte _element0; }
}

/// <summary><c>struct xen_platform_parameters</c> (xen/version.h) for 64-bit callers: <c>xen_ulong_t virt_start</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct XenPlatformParameters
{
    /// <summary><c>virt_start</c>: start of the hypervisor's reserved virtual range (PV); HVM guests get the x86-64 value anyway.</summary>
    public ulong VirtStart;
}

/// <summary><c>struct xen_platform_parameters</c> as a 32-bit caller lays it out (<c>xen_ulong_t</c> is 32 bits).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct CompatXenPlatformParameters
{
    /// <summary><c>virt_start</c>.</summary>
    public uint VirtStart;
}

/// <summary><c>struct xen_feature_info</c> (xen/version.h), the argument of <c>XENVER_get_features</c>; same layout in both ABIs.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct XenFeatureInfo
{
    /// <summary><c>submap_idx</c> (IN): which 32-bit submap of <c>XENFEAT_*</c> bits to return.</summary>
    public uint SubmapIdx;
    /// <summary><c>submap</c> (OUT): the feature bits <c>32 * submap_idx</c> to <c>32 * submap_idx + 31</c>.</summary>
    public uint Submap;
}

/// <summary>
/// The fixed head of <c>struct xen_build_id</c> (xen/version.h): <c>uint32_t len</c>, followed in
/// guest memory by <c>unsigned char buf[len]</c>.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public struct XenBuildId
{
    /// <summary><c>len</c> (IN): size of the buffer after this field.</summary>
    public uint Len;
}
