using System.Runtime.InteropServices;
using VmmKit.Hypercall;

namespace VmmKit.ReferenceHypervisor;

/// <summary>
/// The wallclock in shared_info (<c>wc_version</c>, <c>wc_sec</c>, <c>wc_nsec</c>, <c>wc_sec_hi</c>): the UTC time at which
/// the guest's system time was 0, written with the version protocol as Xen's <c>update_domain_wallclock_time</c>
/// (xen/arch/x86/time.c) in the 64-bit or 32-bit layout the domain latched.
/// </summary>
internal static class Wallclock
{
    /// <summary>Writes <paramref name="unixNanoseconds"/> (UTC at system time 0) into the shared_info page.</summary>
    public static void Write(Span<byte> sharedInfo, bool compat, ulong unixNanoseconds)
    {
        ulong sec = unixNanoseconds / 1_000_000_000;
        uint nsec = (uint)(unixNanoseconds % 1_000_000_000);
        if (compat)
        {
            ref CompatSharedInfo s = ref MemoryMarshal.AsRef<CompatSharedInfo>(sharedInfo[..System.Runtime.CompilerServices.Unsafe.SizeOf<CompatSharedInfo>()]);
            uint version = (s.WcVersion + 1) | 1;
            Volatile.Write(ref s.WcVersion, version);
            s.WcSec = (uint)sec;
            s.WcNsec = nsec;
            s.Arch.WcSecHi = (uint)(sec >> 32);
            Volatile.Write(ref s.WcVersion, version + 1);
        }
        else
        {
            ref SharedInfo s = ref MemoryMarshal.AsRef<SharedInfo>(sharedInfo[..System.Runtime.CompilerServices.Unsafe.SizeOf<SharedInfo>()]);
            uint version = (s.WcVersion + 1) | 1;
            Volatile.Write(ref s.WcVersion, version);
            s.WcSec = (uint)sec;
            s.WcNsec = nsec;
            s.WcSecHi = (uint)(sec >> 32);
            Volatile.Write(ref s.WcVersion, version + 1);
        }
    }
}
