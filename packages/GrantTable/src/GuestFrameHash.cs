using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace VmmKit.GrantTable;

/// <summary>
/// The hash of guest frame numbers in a domain's dictionaries (<c>GrantDomain.GrantMappedGfns</c>, <c>TableGfns</c>),
/// whose keys the guest chooses (a map's <c>host_addr</c>, an <c>add_to_physmap</c>'s <c>gpfn</c>). <see cref="ulong"/>'s
/// own hash is its low 32 bits XOR its high 32, and a <see cref="Dictionary{TKey, TValue}"/>'s bucket is that modulo its
/// bucket count, which a guest can work out from how many entries it made: frames k·P would all share one bucket, and
/// each lookup walk all of them (a hash flood). Here each dictionary has random keys the guest never sees, and the hash
/// is the vector multiply-shift ((a0·lo + a1·hi + b) mod 2^64) &gt;&gt; 32 of the frame's two 32-bit halves, strongly
/// universal (Thorup, "High Speed Hashing for Integers and Strings", 2015): whatever frames the guest picks, two
/// collide with probability about 2^-32, so its chains stay as short as random keys' would. Xen needs none: it keeps
/// a frame's grant mapping in the p2m entry's type.
/// </summary>
internal sealed class GuestFrameHash : IEqualityComparer<ulong>
{
    private readonly ulong _a0;
    private readonly ulong _a1;
    private readonly ulong _b;

    public GuestFrameHash()
    {
        Span<ulong> keys = stackalloc ulong[3];
        RandomNumberGenerator.Fill(MemoryMarshal.AsBytes(keys));
        (_a0, _a1, _b) = (keys[0], keys[1], keys[2]);
    }

    public bool Equals(ulong x, ulong y) => x == y;

    public int GetHashCode(ulong gfn) => (int)(((_a0 * (uint)gfn) + (_a1 * (gfn >> 32)) + _b) >> 32);
}
