using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace VmmKit.Backends.Console;

/// <summary><c>struct xencons_interface</c> (xen/io/console.h): the PV console's two byte rings and their indexes, one page.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct XenconsInterface
{
    /// <summary>Size of <c>in</c>, the ring from the backend to the guest.</summary>
    public const int InSize = 1024;

    /// <summary>Size of <c>out</c>, the ring from the guest to the backend.</summary>
    public const int OutSize = 2048;

    /// <summary><c>char in[1024]</c>: console input, written by the backend.</summary>
    public InRing In;

    /// <summary><c>char out[2048]</c>: console output, written by the guest.</summary>
    public OutRing Out;

    /// <summary><c>in_cons</c>: advanced by the guest.</summary>
    public uint InCons;

    /// <summary><c>in_prod</c>: advanced by the backend.</summary>
    public uint InProd;

    /// <summary><c>out_cons</c>: advanced by the backend.</summary>
    public uint OutCons;

    /// <summary><c>out_prod</c>: advanced by the guest.</summary>
    public uint OutProd;

    /// <summary>The <c>in</c> bytes.</summary>
    [InlineArray(InSize)]
    public struct InRing
    {
        private byte _b;
    }

    /// <summary>The <c>out</c> bytes.</summary>
    [InlineArray(OutSize)]
    public struct OutRing
    {
        private byte _b;
    }
}
