namespace VmmKit.Ept;

/// <summary>A guest frame number (Xen's <c>gfn</c>): a guest-physical address shifted right by 12.</summary>
/// <param name="Value">The frame number.</param>
public readonly record struct GuestFrameNumber(ulong Value) : IComparable<GuestFrameNumber>
{
    /// <summary>The guest-physical address of the first byte of this frame.</summary>
    public GuestPhysicalAddress Address => new(Value << Page.PageShift);

    /// <summary>The frame <paramref name="count"/> frames further.</summary>
    public static GuestFrameNumber operator +(GuestFrameNumber frame, ulong count) => new(unchecked(frame.Value + count));

    /// <inheritdoc/>
    public int CompareTo(GuestFrameNumber other) => Value.CompareTo(other.Value);

    /// <summary>Formats as <c>gfn:0x...</c>.</summary>
    /// <returns>The frame number in hexadecimal.</returns>
    public override string ToString() => $"gfn:0x{Value:x}";
}
