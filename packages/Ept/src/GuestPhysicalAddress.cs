namespace VmmKit.Ept;

/// <summary>
/// A guest-physical address: what a guest believes is a physical address, translated to a
/// machine address by the domain's EPT (SDM Vol. 3C §29.3).
/// </summary>
/// <param name="Value">The 64-bit guest-physical address.</param>
public readonly record struct GuestPhysicalAddress(ulong Value) : IComparable<GuestPhysicalAddress>
{
    /// <summary>The guest frame number (gfn) of the 4 KiB page containing this address.</summary>
    public GuestFrameNumber FrameNumber => new(Value >> Page.PageShift);

    /// <summary>The offset of this address inside its 4 KiB page.</summary>
    public int PageOffset => (int)(Value & Page.PageOffsetMask);

    /// <summary>True when the address is the first byte of a 4 KiB page.</summary>
    public bool IsPageAligned => (Value & Page.PageOffsetMask) == 0;

    /// <summary>Adds <paramref name="offset"/>, wrapping modulo 2^64 like hardware address arithmetic.</summary>
    public static GuestPhysicalAddress operator +(GuestPhysicalAddress address, ulong offset) => new(unchecked(address.Value + offset));

    /// <summary>Subtracts <paramref name="offset"/>, wrapping modulo 2^64.</summary>
    public static GuestPhysicalAddress operator -(GuestPhysicalAddress address, ulong offset) => new(unchecked(address.Value - offset));

    /// <summary>The distance in bytes from <paramref name="right"/> to <paramref name="left"/> (wrapping).</summary>
    public static ulong operator -(GuestPhysicalAddress left, GuestPhysicalAddress right) => unchecked(left.Value - right.Value);

    /// <summary>Compares two addresses numerically.</summary>
    public static bool operator <(GuestPhysicalAddress left, GuestPhysicalAddress right) => left.Value < right.Value;

    /// <summary>Compares two addresses numerically.</summary>
    public static bool operator >(GuestPhysicalAddress left, GuestPhysicalAddress right) => left.Value > right.Value;

    /// <summary>Compares two addresses numerically.</summary>
    public static bool operator <=(GuestPhysicalAddress left, GuestPhysicalAddress right) => left.Value <= right.Value;

    /// <summary>Compares two addresses numerically.</summary>
    public static bool operator >=(GuestPhysicalAddress left, GuestPhysicalAddress right) => left.Value >= right.Value;

    /// <summary>Adds <paramref name="offset"/> unless the sum would pass 2^64 - 1.</summary>
    /// <param name="offset">Bytes to add.</param>
    /// <param name="result">The sum when it fits.</param>
    /// <returns>False on overflow (a guest-supplied range that wraps around).</returns>
    public bool TryAdd(ulong offset, out GuestPhysicalAddress result)
    {
        ulong sum = unchecked(Value + offset);
        result = new GuestPhysicalAddress(sum);
        return sum >= Value;
    }

    /// <summary>Adds <paramref name="offset"/>, throwing <see cref="OverflowException"/> past 2^64 - 1 (host-side arithmetic only).</summary>
    /// <param name="offset">Bytes to add.</param>
    /// <returns>The sum.</returns>
    public GuestPhysicalAddress CheckedAdd(ulong offset) => new(checked(Value + offset));

    /// <summary>Rounds down to the start of the 4 KiB page.</summary>
    public GuestPhysicalAddress AlignDown() => new(Value & ~Page.PageOffsetMask);

    /// <inheritdoc/>
    public int CompareTo(GuestPhysicalAddress other) => Value.CompareTo(other.Value);

    /// <summary>Formats as <c>gpa:0x...</c>.</summary>
    /// <returns>The address in hexadecimal.</returns>
    public override string ToString() => $"gpa:0x{Value:x}";
}
