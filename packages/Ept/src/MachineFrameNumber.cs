namespace VmmKit.Ept;

/// <summary>
/// A machine frame number (Xen's <c>mfn</c>): the index of a 4 KiB frame of <see cref="MachineMemory"/>.
/// The machine-physical address of the frame is <c>mfn &lt;&lt; 12</c>.
/// </summary>
/// <param name="Value">The frame number.</param>
public readonly record struct MachineFrameNumber(ulong Value) : IComparable<MachineFrameNumber>
{
    /// <summary>The machine-physical address of the first byte of this frame.</summary>
    public ulong Address => Value << Page.PageShift;

    /// <summary>The frame <paramref name="count"/> frames further.</summary>
    public static MachineFrameNumber operator +(MachineFrameNumber frame, ulong count) => new(unchecked(frame.Value + count));

    /// <inheritdoc/>
    public int CompareTo(MachineFrameNumber other) => Value.CompareTo(other.Value);

    /// <summary>Formats as <c>mfn:0x...</c>.</summary>
    /// <returns>The frame number in hexadecimal.</returns>
    public override string ToString() => $"mfn:0x{Value:x}";
}
